"""Flax Linen adapters, both ways: Linen cells as pure cells, pure cells as Linen cells.

- :func:`from_linen`: any ``nn.RNNCellBase`` (Flax's ``OptimizedLSTMCell``, ``GRUCell``,
  ``MGUCell``, ``ConvLSTMCell``, ``SimpleCell``, your own) as a :class:`skip_rnn.Cell`, so that
  ``sr.skip``, ``sr.unroll`` and ``sr.jump_unroll`` run it.
- :class:`Skip`: :func:`skip_rnn.skip` of any Linen cell, itself a Linen cell for ``nn.RNN``.
- :class:`LSTMCell`, :class:`GRUCell`, :class:`SkipLSTMCell`, :class:`SkipGRUCell`: our pure
  cells for ``nn.RNN``; they hold one parameter pytree (the pure cell's, under the name
  ``"cell"``) and take Flax's ``dtype=`` and ``param_dtype=``.

Every module calls the pure step of :func:`skip_rnn.skip`; no equation is implemented twice.
The cells keep Flax's contract: ``__call__(carry, x) -> (carry, h)`` with ``h`` ``[B, H]``, so
``nn.RNN``, ``nn.Bidirectional`` (its default merge concatenates ``h``), ``nn.Sequential`` and
``nn.scan`` take them unchanged. The gates travel in the carry: a skip cell's carry is a
:class:`skip_rnn.SkipState` whose ``num_updates`` counts the updates with ``u``'s
straight-through gradient, and ``nn.RNN(..., seq_lengths=)`` keeps the carry of each sequence's
last valid step, so the budget loss (eq. 8) of ``nn.RNN(..., return_carry=True)`` is
``λ * jnp.mean(carry.num_updates)``, padding excluded, with :func:`skip_rnn.unroll`'s value and
gradient. Each step also sows its :class:`skip_rnn.Output` (``h`` and the gates ``u``, ``ũ``,
``Δũ``) as ``("intermediates", "output")``: ``nn.RNN(cell, variable_axes={"intermediates":
1})`` and ``apply(..., mutable=["intermediates"])`` stack them over time, for figures.

Example:
  >>> import jax, jax.numpy as jnp, flax.linen as nn
  >>> from skip_rnn.linen import SkipLSTMCell
  >>> rnn = nn.RNN(SkipLSTMCell(8), return_carry=True)
  >>> xs = jnp.ones((2, 5, 3))
  >>> variables = rnn.init(jax.random.key(0), xs)
  >>> carry, hs = rnn.apply(variables, xs)
  >>> hs.shape, carry.num_updates.shape  # h of every step; updates per sequence
  ((2, 5, 8), (2,))

Bernoulli gates draw from the ``"skip"`` rng, one key per step:
``nn.RNN(SkipLSTMCell(8, binarize="bernoulli"), split_rngs={"params": False, "skip": True})``
(or ``Skip(cell, binarize="bernoulli")``) and ``rngs={"skip": key}`` in ``init`` and
``apply``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from skip_rnn._src import cells
from skip_rnn._src.base import Array, Cell, Output, Params, PRNGKey, State, rows_sharded_like
from skip_rnn._src.skip import (
    SkipState,
    check_settings,
    gate_dtype,
    gated_step,
    init_gate,
    initial_skip_state,
    skip,
)


def _emit(module: nn.Module, out: Output) -> Array:
    """A step's ``h``, what Flax cells return; the whole :class:`skip_rnn.Output` is sown as
    ``("intermediates", "output")`` for whoever asks (see the module docstring)."""
    module.sow("intermediates", "output", out)
    return out.h


class PureCell(nn.RNNCellBase):
    """Base adapter: subclasses say which pure cell they wrap in :meth:`pure_cell`."""

    def pure_cell(self) -> Cell:
        raise NotImplementedError

    @nn.compact
    def __call__(self, carry: State, inputs: Array) -> tuple[State, Array]:
        """One step: ``carry`` as from :meth:`initialize_carry`, ``inputs`` ``[B, F]``."""
        cell = self.pure_cell()
        params = self.param("cell", lambda key: cell.init(key, inputs.shape[-1]))
        key = self.make_rng("skip") if getattr(self, "binarize", "round") == "bernoulli" else None
        carry, out = cell.step(params, rows_sharded_like(carry, inputs), inputs, key)
        return carry, _emit(self, out)

    @nn.nowrap
    def initialize_carry(self, rng: PRNGKey, input_shape: tuple[int, ...]) -> State:
        """The learned initial state ``s_0`` for inputs of shape ``[B, F]``.

        The parameters are made by the first ``__call__``, after ``nn.RNN`` asks for the
        carry; until then, and on an unbound module, ``s_0`` is its initial value (zeros).
        """
        if len(input_shape) != 2:
            raise ValueError(f"expected inputs [batch, features], got shape {input_shape}.")
        cell = self.pure_cell()
        if self.scope is not None and self.has_variable("params", "cell"):
            params = self.get_variable("params", "cell")
        else:
            params = cell.init(rng, input_shape[-1])
        return cell.initial_state(params, input_shape[0])

    @property
    def num_feature_axes(self) -> int:
        return 1


class _Layer(PureCell):
    """``make_layer(features, dtype=, param_dtype=)`` as a Linen cell; ``dtype`` and
    ``param_dtype`` (keyword-only) as in Flax's cells and :func:`skip_rnn.lstm`: the
    computation and the carry, the stored parameters."""

    features: int
    _: dataclasses.KW_ONLY
    dtype: DTypeLike | None = None
    param_dtype: DTypeLike = jnp.float32
    make_layer: ClassVar[Callable[..., Cell]]

    def pure_cell(self) -> Cell:
        return self.make_layer(self.features, dtype=self.dtype, param_dtype=self.param_dtype)


class LSTMCell(_Layer):
    """:func:`skip_rnn.lstm` as a Linen cell."""

    make_layer = staticmethod(cells.lstm)


class GRUCell(_Layer):
    """:func:`skip_rnn.gru` as a Linen cell."""

    make_layer = staticmethod(cells.gru)


class _SkipCell(_Layer):
    """:func:`skip_rnn.skip` of the layer; Bernoulli gates use the "skip" rng. The gate stays
    float32 whatever ``dtype`` (:func:`skip_rnn._src.skip.gate_dtype`)."""

    binarize: str = "round"
    update_bias: float = 1.0
    max_updates: int | None = None
    gradient: str = "eq5"

    def __post_init__(self) -> None:
        check_settings(self.binarize, self.max_updates, self.gradient)  # at construction
        super().__post_init__()

    def pure_cell(self) -> Cell:
        return skip(super().pure_cell(), self.binarize, self.update_bias, self.max_updates,
                    self.gradient)


class SkipLSTMCell(_SkipCell):
    """:func:`skip_rnn.skip` of :func:`skip_rnn.lstm` (the gate reads ``c``)."""

    make_layer = staticmethod(cells.lstm)


class SkipGRUCell(_SkipCell):
    """:func:`skip_rnn.skip` of :func:`skip_rnn.gru` (the gate reads ``h``)."""

    make_layer = staticmethod(cells.gru)


def check_one_batch_axis(caller: str, input_shape: tuple[int, ...], feature_axes: int) -> None:
    """Refuses inputs with other than one batch axis before the features (``[B, ..., F]``): the
    gate's ``ũ`` and the skip counts are per sequence, ``[B]``."""
    if len(input_shape) != 1 + feature_axes:
        raise ValueError(
            f"{caller}: inputs must have one batch axis, [batch, {'..., ' * (feature_axes > 1)}"
            f"features] per step, got shape {tuple(input_shape)}: merge the batch axes "
            "(reshape to [-1, ...]) first.")


def default_gate_input(carry: State) -> Array:
    """What the update gate reads unless told otherwise: the carry's first leaf, flattened per
    example, ``[B, D]``. Flax's LSTM carries are ``(c, h)``, so the gate reads ``c`` (as the
    paper); GRU, MGU and simple cells: ``h``; ``ConvLSTMCell``: ``c``, ``D = height·width·H``.
    """
    first = jax.tree.leaves(carry)[0]
    return first.reshape(first.shape[0], -1)


def default_output(carry: State) -> Array:
    """The output a carry stands for unless told otherwise: its last leaf (``h`` in every Flax
    cell: ``[B, H]``, ``ConvLSTMCell``: ``[B, height, width, H]``)."""
    return jax.tree.leaves(carry)[-1]


def from_linen(
    module: nn.RNNCellBase,
    *,
    gate_input: Callable[[State], Array] = default_gate_input,
    output: Callable[[State], Array] = default_output,
    learned_initial_state: bool = False,
    spatial_shape: tuple[int, ...] = (),
) -> Cell:
    """Any Linen recurrent cell as a pure :class:`skip_rnn.Cell`.

    ``sr.skip(sr.from_linen(nn.OptimizedLSTMCell(128)))`` is a Skip LSTM built on Flax's cell;
    ``sr.unroll``, ``sr.jump_unroll``, the budget losses and populations run it unchanged.
    The state is the module's carry; ``step`` is ``module.apply`` and emits the module's output.

    Parameters: the module's variables ``{"params": ...}``; with ``learned_initial_state``
    also ``"s0"``, the carry's leaves without their batch axis as a dict (``{"0": c, "1": h}``
    for Flax's LSTM carry ``(c, h)``, as ``flax.serialization`` writes a tuple), initialised by
    ``initialize_carry``.
    Otherwise ``s_0`` is ``module.initialize_carry(jax.random.key(0), (B, *spatial_shape, 1))``
    (``nn.RNN``'s default key; Flax's cells read only the batch and spatial sizes).

    Args:
      module: an unbound ``nn.RNNCellBase``: Flax's ``OptimizedLSTMCell``, ``LSTMCell``,
        ``GRUCell``, ``MGUCell``, ``SimpleCell``, ``ConvLSTMCell``, or your own.
      gate_input: ``gate_input(carry) -> [B, D]``, what the update gate reads
        (:func:`default_gate_input`).
      output: ``output(carry) -> h``, the output a carry stands for (:func:`default_output`).
      learned_initial_state: learn ``s_0``, as the paper's cells do.
      spatial_shape: the input axes between batch and features (``ConvLSTMCell``:
        ``(height, width)``); inputs are then ``[B, *spatial_shape, F]``, sequences
        ``[B, T, *spatial_shape, F]``.

    Example:
      >>> import jax, jax.numpy as jnp, flax.linen as nn, skip_rnn as sr
      >>> cell = sr.skip(sr.from_linen(nn.OptimizedLSTMCell(8)))
      >>> params = cell.init(jax.random.key(0), 3)
      >>> state, out = sr.unroll(cell, params, jnp.ones((2, 5, 3)))
      >>> out.h.shape, params["w_p"].shape  # the gate reads c
      ((2, 5, 8), (8,))
    """
    if len(spatial_shape) != module.num_feature_axes - 1:
        raise ValueError(
            f"from_linen: {type(module).__name__} reads inputs with "
            f"{module.num_feature_axes - 1} spatial axes: pass them as `spatial_shape`, "
            f"got {spatial_shape}."
        )

    def carry(batch_size: int) -> State:
        return module.initialize_carry(jax.random.key(0), (batch_size, *spatial_shape, 1))

    def init(key: PRNGKey, input_size: int) -> Params:
        variables = dict(module.init(key, carry(1), jnp.zeros((1, *spatial_shape, input_size))))
        if learned_initial_state:
            variables["s0"] = {str(i): s[0] for i, s in enumerate(jax.tree.leaves(carry(1)))}
        return variables

    def initial_state(params: Params, batch_size: int) -> State:
        if not learned_initial_state:
            return carry(batch_size)
        treedef = jax.tree.structure(jax.eval_shape(lambda: carry(1)))
        s0 = [params["s0"][str(i)] for i in range(treedef.num_leaves)]
        return cells.broadcast_rows(jax.tree.unflatten(treedef, s0), batch_size)

    def step(params: Params, state: State, x: Array, key: PRNGKey | None = None):
        del key
        carry, h = module.apply({k: v for k, v in params.items() if k != "s0"}, state, x)
        return carry, Output.updated(h)

    return Cell(init, initial_state, step, output, gate_input)


class Skip(nn.RNNCellBase):
    """:func:`skip_rnn.skip` of any Linen cell, itself a Linen cell for ``nn.RNN``.

    The wrapped cell is the child ``"cell"``, so its parameters are laid out as in
    ``nn.RNN(cell)``, one level down: ``{"cell": <the cell's>, "w_p": [D], "b_p": []}``; a
    trained plain model's parameters drop in. The carry is a :class:`skip_rnn.SkipState`
    around the cell's; the gate reads :func:`default_gate_input` of it; each step returns the
    output ``h`` and sows its :class:`skip_rnn.Output` (module docstring).

    Padding: ``nn.RNN(..., seq_lengths=lengths, return_carry=True)`` returns the carry of each
    sequence's last valid step, :func:`skip_rnn.unroll`'s ``final_state`` (for ``lengths >=
    1``: Flax gives an empty sequence the carry after the padding), and the outputs of valid
    steps are ``unroll``'s; that carry's ``num_updates`` counts valid steps only, so
    ``λ * jnp.mean(carry.num_updates)`` is ``unroll``'s budget loss, value and gradient. (The
    sown per-step gates include the padded steps: :func:`skip_rnn.mask_padding` zeroes them.) Give
    ``nn.RNN`` ``zero_padding(xs, lengths)`` (:func:`skip_rnn.zero_padding`), as ``unroll``
    reads its inputs, so that NaN or Inf in the padding cannot reach a gradient.

    Precision: the cell's own ``dtype`` and ``param_dtype`` (``nn.GRUCell(64,
    dtype=jnp.bfloat16)``); the gate's ``w_p``, ``b_p`` and its path are float32 whatever they
    are, as in :func:`skip_rnn.skip`.

    Attributes:
      cell: any ``nn.RNNCellBase`` (``ConvLSTMCell`` included: inputs ``[B, T, h, w, F]``).
      binarize, update_bias, max_updates, gradient: as in :func:`skip_rnn.skip`;
        ``"bernoulli"`` gates draw from the ``"skip"`` rng.

    Example:
      >>> import jax, jax.numpy as jnp, flax.linen as nn
      >>> from skip_rnn.linen import Skip
      >>> rnn = nn.RNN(Skip(nn.GRUCell(8)))
      >>> xs = jnp.ones((2, 5, 3))
      >>> variables = rnn.init(jax.random.key(0), xs)
      >>> sorted(variables["params"]["cell"])
      ['b_p', 'cell', 'w_p']
      >>> rnn.apply(variables, xs).shape
      (2, 5, 8)
    """

    cell: nn.RNNCellBase
    binarize: str = "round"
    update_bias: float = 1.0
    max_updates: int | None = None
    gradient: str = "eq5"

    def __post_init__(self) -> None:
        check_settings(self.binarize, self.max_updates, self.gradient)  # at construction
        super().__post_init__()

    @nn.compact
    def __call__(self, carry: SkipState, inputs: Array) -> tuple[SkipState, Array]:
        """One step: ``carry`` as from :meth:`initialize_carry`, ``inputs`` ``[B, ..., F]``.

        The child is called in place, its parameters in its own scope; the gate's are drawn
        as :func:`skip_rnn.skip` draws them (:func:`skip_rnn._src.skip.init_gate`)."""
        size = default_gate_input(carry.cell).shape[-1]
        w_p = self.param("w_p", lambda key: init_gate(key, size, self.update_bias)["w_p"])
        b_p = self.param("b_p", lambda key: init_gate(key, size, self.update_bias)["b_p"])
        key = self.make_rng("skip") if self.binarize == "bernoulli" else None
        carry, out = gated_step(self.cell, default_gate_input, default_output,
                                {"w_p": w_p, "b_p": b_p}, rows_sharded_like(carry, inputs),
                                inputs, key, binarize=self.binarize,
                                max_updates=self.max_updates, gradient=self.gradient)
        return carry, _emit(self, out)

    @nn.nowrap
    def initialize_carry(self, rng: PRNGKey, input_shape: tuple[int, ...]) -> SkipState:
        """The wrapped cell's initial carry inside a :class:`skip_rnn.SkipState` (``ũ_1 = 1``),
        the gate in the dtype its step computes in (:func:`skip_rnn._src.skip.gate_dtype` of
        ``b_p``: float32, float64 under ``jax.enable_x64`` with float64 parameters); float32
        before the parameters exist."""
        check_one_batch_axis("Skip", input_shape, self.cell.num_feature_axes)
        dtype = jnp.float32
        if self.scope is not None and self.has_variable("params", "b_p"):
            dtype = gate_dtype({"b_p": self.get_variable("params", "b_p")})
        return initial_skip_state(self.cell.initialize_carry(rng, input_shape), input_shape[0],
                                  dtype)

    @property
    def num_feature_axes(self) -> int:
        return self.cell.num_feature_axes
