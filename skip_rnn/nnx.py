"""Flax NNX adapter: :func:`skip_rnn.skip` of any NNX recurrent cell, usable in ``nnx.RNN``.

``Skip(cell)`` holds the wrapped cell as ``.cell`` and the gate's ``nnx.Param``s ``w_p``
``[D]`` and ``b_p`` ``[]``, and calls :func:`skip_rnn._src.skip.gated_step`, the step of
:func:`skip_rnn.skip` and the function the Linen :class:`skip_rnn.linen.Skip` calls: same
parameters, same numbers.

Example:
  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> from skip_rnn.nnx import Skip
  >>> rngs = nnx.Rngs(0)
  >>> rnn = nnx.RNN(Skip(nnx.LSTMCell(3, 8, rngs=rngs), rngs=rngs))
  >>> carry, hs = nnx.RNN(rnn.cell, return_carry=True)(jnp.ones((2, 5, 3)))
  >>> hs.shape, carry.num_updates.shape, rnn.cell.w_p.shape  # the gate reads c
  ((2, 5, 8), (2,), (8,))

Precision: the cell's own ``dtype`` and ``param_dtype`` (``nnx.LSTMCell(3, 8,
dtype=jnp.bfloat16, rngs=rngs)``); ``w_p``, ``b_p`` and the gate's path are float32 whatever
they are, as in :func:`skip_rnn.skip`.

Bernoulli gates draw from the ``skip`` stream of the ``rngs`` given to ``Skip`` (``nnx.Rngs``
falls back to ``default``), one key per step.
"""

from __future__ import annotations

from collections.abc import Callable

from flax import nnx

from skip_rnn._src.base import Array, Params, rows_sharded_like
from skip_rnn._src.skip import (
    SkipState,
    check_settings,
    gate_dtype,
    gated_step,
    init_gate,
    initial_skip_state,
)
from skip_rnn.linen import check_one_batch_axis, default_gate_input, default_output


class Skip(nnx.RNNCellBase):
    """:func:`skip_rnn.skip` of an NNX cell (eqs. 2-5), itself an NNX cell.

    The carry is a :class:`skip_rnn.SkipState` around the cell's; the gate reads
    :func:`skip_rnn.linen.default_gate_input` of it (LSTM ``c``, GRU ``h``); each step returns
    the output ``h`` ``[B, H]``, as every NNX cell. The carry's ``num_updates`` counts the
    updates with ``u``'s straight-through gradient: ``λ * jnp.mean(carry.num_updates)`` of
    ``nnx.RNN(..., return_carry=True)`` is the budget loss (eq. 8), as for
    :class:`skip_rnn.linen.Skip`. With ``nnx.RNN(..., seq_lengths=)``, zero the padded inputs
    with :func:`skip_rnn.zero_padding`.

    Args:
      cell: an NNX cell with inputs ``[B, F]`` and an ``in_features`` attribute
        (``nnx.LSTMCell``, ``OptimizedLSTMCell``, ``GRUCell``, ``SimpleCell``, or your own).
      binarize, update_bias, max_updates, gradient: as in :func:`skip_rnn.skip`.
      rngs: ``params`` initialises ``w_p``; ``skip`` draws Bernoulli gates.
    """

    def __init__(
        self,
        cell: nnx.RNNCellBase,
        *,
        binarize: str = "round",
        update_bias: float = 1.0,
        max_updates: int | None = None,
        gradient: str = "eq5",
        rngs: nnx.Rngs,
    ):
        check_settings(binarize, max_updates, gradient)
        self.cell = cell
        self.binarize, self.update_bias = binarize, update_bias
        self.max_updates, self.gradient = max_updates, gradient
        # A carry made here only sizes w_p; the gate is drawn as skip_rnn.skip draws it.
        carry = cell.initialize_carry((1, cell.in_features), nnx.Rngs(0))
        gate = init_gate(rngs.params(), default_gate_input(carry).shape[-1], update_bias)
        self.w_p = nnx.Param(gate["w_p"])
        self.b_p = nnx.Param(gate["b_p"])
        self.rngs = rngs.skip.fork() if binarize == "bernoulli" else nnx.data(None)

    def __call__(self, carry: SkipState, inputs: Array) -> tuple[SkipState, Array]:
        """One step: ``carry`` as from :meth:`initialize_carry`, ``inputs`` ``[B, F]``; the
        wrapped cell is called in place (its parameters are its own)."""
        key = self.rngs() if self.binarize == "bernoulli" else None
        carry, out = gated_step(self.cell, default_gate_input, default_output, self._gate(),
                                rows_sharded_like(carry, inputs), inputs, key,
                                binarize=self.binarize, max_updates=self.max_updates,
                                gradient=self.gradient)
        return carry, out.h

    def initialize_carry(
        self,
        input_shape: tuple[int, ...],
        rngs: nnx.Rngs | nnx.RngStream | None = None,
        carry_init: Callable | None = None,
    ) -> SkipState:
        """The wrapped cell's initial carry (``rngs``, ``carry_init`` go to it) inside a
        :class:`skip_rnn.SkipState` (``ũ_1 = 1``)."""
        check_one_batch_axis("nnx.Skip", input_shape, self.cell.num_feature_axes)
        return initial_skip_state(self.cell.initialize_carry(input_shape, rngs, carry_init),
                                  input_shape[0], gate_dtype(self._gate()))

    def _gate(self) -> Params:
        """The gate's parameters as :func:`skip_rnn._src.skip.gated_step` reads them."""
        return {"w_p": self.w_p[...], "b_p": self.b_p[...]}

    @property
    def num_feature_axes(self) -> int:
        return self.cell.num_feature_axes
