"""Flax Linen adapter: the pure cells as ``flax.linen.RNNCellBase`` for ``nn.RNN``.

The modules hold one parameter pytree (the pure cell's, under the name ``"cell"``) and call
the pure ``step``; no equation is implemented twice. ``nn.RNN(SkipLSTMCell(110))(xs)``
returns the :class:`skip_rnn.Output` of every step (leaves ``[B, T, ...]``).

Example:
  >>> import jax, jax.numpy as jnp, flax.linen as nn
  >>> from skip_rnn.linen import SkipLSTMCell
  >>> rnn = nn.RNN(SkipLSTMCell(8))
  >>> variables = rnn.init(jax.random.key(0), jnp.ones((2, 5, 3)))
  >>> rnn.apply(variables, jnp.ones((2, 5, 3))).u.shape
  (2, 5)

Bernoulli gates draw from the ``"skip"`` rng, one key per step:
``nn.RNN(SkipLSTMCell(8, binarize="bernoulli"), split_rngs={"params": False, "skip": True})``
and ``rngs={"skip": key}`` in ``init`` and ``apply``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import flax.linen as nn

from skip_rnn import cells
from skip_rnn.base import Array, Cell, PRNGKey, State
from skip_rnn.skip import skip


class PureCell(nn.RNNCellBase):
    """Base adapter: subclasses say which pure cell they wrap in :meth:`pure_cell`."""

    def pure_cell(self) -> Cell:
        raise NotImplementedError

    @nn.compact
    def __call__(self, carry: State, inputs: Array) -> tuple[State, Any]:
        """One step: ``carry`` as from :meth:`initialize_carry`, ``inputs`` ``[B, F]``."""
        cell = self.pure_cell()
        params = self.param("cell", lambda key: cell.init(key, inputs.shape[-1]))
        key = self.make_rng("skip") if getattr(self, "binarize", "round") == "bernoulli" else None
        return cell.step(params, carry, inputs, key)

    @nn.nowrap
    def initialize_carry(self, rng: PRNGKey, input_shape: tuple[int, ...]) -> State:
        """The learned initial state ``s_0`` for inputs of shape ``[B, F]``.

        The parameters are made by the first ``__call__``, after ``nn.RNN`` asks for the
        carry; until then ``s_0`` is its initial value (zeros).
        """
        if len(input_shape) != 2:
            raise ValueError(f"expected inputs [batch, features], got shape {input_shape}.")
        cell = self.pure_cell()
        if self.has_variable("params", "cell"):
            params = self.get_variable("params", "cell")
        else:
            params = cell.init(rng, input_shape[-1])
        return cell.initial_state(params, input_shape[0])

    @property
    def num_feature_axes(self) -> int:
        return 1


class LSTMCell(PureCell):
    """:func:`skip_rnn.lstm` as a Linen cell."""

    features: int

    def pure_cell(self) -> Cell:
        return cells.lstm(self.features)


class GRUCell(PureCell):
    """:func:`skip_rnn.gru` as a Linen cell."""

    features: int

    def pure_cell(self) -> Cell:
        return cells.gru(self.features)


class _SkipCell(PureCell):
    """:func:`skip_rnn.skip` of ``make_layer(features)``; Bernoulli gates use the "skip" rng."""

    features: int
    binarize: str = "round"
    update_bias: float = 1.0
    max_updates: int | None = None
    gradient: str = "eq5"
    make_layer: ClassVar[Callable[[int], Cell]]

    def pure_cell(self) -> Cell:
        return skip(self.make_layer(self.features), self.binarize, self.update_bias,
                    self.max_updates, self.gradient)


class SkipLSTMCell(_SkipCell):
    """:func:`skip_rnn.skip` of :func:`skip_rnn.lstm` (the gate reads ``c``)."""

    make_layer = staticmethod(cells.lstm)


class SkipGRUCell(_SkipCell):
    """:func:`skip_rnn.skip` of :func:`skip_rnn.gru` (the gate reads ``h``)."""

    make_layer = staticmethod(cells.gru)
