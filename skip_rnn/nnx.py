"""Flax NNX adapter: :func:`skip_rnn.skip` of any NNX recurrent cell, usable in ``nnx.RNN``.

``Skip(cell)`` holds the wrapped cell as ``.cell`` and the gate's ``nnx.Param``s ``w_p``
``[D]`` and ``b_p`` ``[]``, and calls the pure ``step`` of :func:`skip_rnn.skip`, the same
function the Linen :class:`skip_rnn.linen.Skip` calls: same parameters, same numbers.

Example:
  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> from skip_rnn.nnx import Skip
  >>> rngs = nnx.Rngs(0)
  >>> rnn = nnx.RNN(Skip(nnx.LSTMCell(3, 8, rngs=rngs), rngs=rngs))
  >>> out = rnn(jnp.ones((2, 5, 3)))  # an Output of [B, T, ...] leaves
  >>> out.h.shape, out.u.shape, rnn.cell.w_p.shape  # the gate reads c
  ((2, 5, 8), (2, 5), (8,))

Precision: the cell's own ``dtype`` and ``param_dtype`` (``nnx.LSTMCell(3, 8,
dtype=jnp.bfloat16, rngs=rngs)``); ``w_p``, ``b_p`` and the gate's path are float32 whatever
they are, as in :func:`skip_rnn.skip`.

Bernoulli gates draw from the ``skip`` stream of the ``rngs`` given to ``Skip`` (``nnx.Rngs``
falls back to ``default``), one key per step.
"""

from __future__ import annotations

from collections.abc import Callable

from flax import nnx

from skip_rnn.base import Array, Cell, Output, Params, State
from skip_rnn.linen import default_gate_input, default_output
from skip_rnn.skip import SkipCell, SkipState, skip


class Skip(nnx.RNNCellBase):
    """:func:`skip_rnn.skip` of an NNX cell (eqs. 2-5), itself an NNX cell.

    The carry is a :class:`skip_rnn.SkipState` around the cell's; the gate reads
    :func:`skip_rnn.linen.default_gate_input` of it (LSTM ``c``, GRU ``h``); each step emits a
    :class:`skip_rnn.Output`. With ``nnx.RNN(..., seq_lengths=)``, mask the padded steps'
    gates with :func:`skip_rnn.mask_padding`, as for :class:`skip_rnn.linen.Skip`.

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
        self.cell = cell
        self.binarize, self.update_bias = binarize, update_bias
        self.max_updates, self.gradient = max_updates, gradient
        gate = self._skip_cell().init(rngs.params(), cell.in_features)
        self.w_p = nnx.Param(gate["w_p"])
        self.b_p = nnx.Param(gate["b_p"])
        self.rngs = rngs.skip.fork() if binarize == "bernoulli" else nnx.data(None)

    def __call__(self, carry: SkipState, inputs: Array) -> tuple[SkipState, Output]:
        """One step: ``carry`` as from :meth:`initialize_carry`, ``inputs`` ``[B, F]``."""
        key = self.rngs() if self.binarize == "bernoulli" else None
        params = {"cell": None, "w_p": self.w_p[...], "b_p": self.b_p[...]}
        return self._skip_cell().step(params, carry, inputs, key)

    def initialize_carry(
        self,
        input_shape: tuple[int, ...],
        rngs: nnx.Rngs | nnx.RngStream | None = None,
        carry_init: Callable | None = None,
    ) -> SkipState:
        """The wrapped cell's initial carry (``rngs``, ``carry_init`` go to it) inside a
        :class:`skip_rnn.SkipState` (``ũ_1 = 1``)."""
        cell = self._skip_cell(self.cell.initialize_carry(input_shape, rngs, carry_init))
        return cell.initial_state({"cell": None, "b_p": self.b_p[...]}, input_shape[0])

    def _skip_cell(self, carry: State | None = None) -> SkipCell:
        """:func:`skip_rnn.skip` of ``self.cell``, called in place (its parameters are its own),
        starting from ``carry``; without it, from a carry made here, which only sizes ``w_p``."""

        def initial_state(params: Params, batch_size: int) -> State:
            if carry is not None:
                return carry
            return self.cell.initialize_carry((batch_size, self.cell.in_features), nnx.Rngs(0))

        child = Cell(
            init=lambda key, input_size: None,
            initial_state=initial_state,
            step=lambda params, state, x, key=None: self.cell(state, x),
            output=default_output,
            gate_input=default_gate_input,
        )
        return skip(child, self.binarize, self.update_bias, self.max_updates, self.gradient)

    @property
    def num_feature_axes(self) -> int:
        return self.cell.num_feature_axes
