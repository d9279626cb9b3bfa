"""The cell contract shared by every recurrent cell in this package.

A cell is a ``NamedTuple`` of pure functions (the optax pattern). Factories such as
:func:`skip_rnn.lstm` and :func:`skip_rnn.skip` build cells; :func:`skip_rnn.unroll` runs any
cell over a sequence. Shapes use ``B`` = batch, ``T`` = time, ``F`` = input features,
``H`` = hidden units.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec

Array = jax.Array
PRNGKey = jax.Array
Params = Any  # a pytree of arrays
State = Any  # a pytree of arrays, every leaf [B, ...]


def serializable(cls: type) -> type:
    """Registers the ``NamedTuple`` ``cls`` for ``jax.export`` serialization as
    ``skip_rnn.<name>``, so that exported functions taking or returning it serialize."""
    name = f"skip_rnn.{cls.__name__}"
    return jax.export.register_namedtuple_serialization(cls, serialized_name=name)


@serializable
class Output(NamedTuple):
    """What every cell's ``step`` emits at one step (leaves ``[B, ...]``), and :func:`unroll`
    over a sequence (leaves ``[B, T, ...]``).

    Attributes:
      h: output of the (top) layer, ``[B, H]``; on a skipped step the copied state's output.
      u: binary state update gate ``u_t`` (eq. 2), ``[B]``; its gradient is straight-through.
      u_tilde: update probability ``ũ_t`` (eq. 5) that ``u_t`` binarizes, ``[B]``.
      delta_u: ``Δũ_t`` (eq. 4), ``[B]``; carried over unchanged on skipped steps.

    Plain cells have ``u = u_tilde = delta_u = 1`` (:meth:`updated`).
    """

    h: Array
    u: Array
    u_tilde: Array
    delta_u: Array

    @classmethod
    def updated(cls, h: Array) -> Output:
        """The output of a step that updates its state without a gate (a plain cell's):
        ``h`` ``[B, ...]`` and ``u = ũ = Δũ = 1`` ``[B]``, float32 as a skip cell's gate (or
        ``h``'s dtype if wider)."""
        ones = jnp.ones(h.shape[:1], jnp.promote_types(h.dtype, jnp.float32))
        return cls(h, ones, ones, ones)


class InitFn(Protocol):
    def __call__(self, key: PRNGKey, input_size: int) -> Params:
        """The parameters for inputs of ``input_size`` features ``F``: a pytree of plain dicts
        of arrays (layout documented by each factory), the learned ``s_0`` included."""


class InitialStateFn(Protocol):
    def __call__(self, params: Params, batch_size: int) -> State:
        """``s_0`` for ``batch_size`` sequences: leaves ``[B, ...]``."""


class StepFn(Protocol):
    def __call__(self, params: Params, state: State, x: Array, key: PRNGKey | None = None
                 ) -> tuple[State, Output]:
        """One time step: ``state`` (leaves ``[B, ...]``) and the input ``x`` ``[B, F]`` (or
        ``[B, ..., F]``) to the next state and the step's :class:`Output` (``h`` ``[B, H]``,
        gates ``[B]``). ``key``: randomness, for stochastic cells only."""


class OutputFn(Protocol):
    def __call__(self, state: State) -> Array:
        """The output ``h`` ``[B, H]`` that ``state`` stands for."""


class GateInputFn(Protocol):
    def __call__(self, state: State) -> Array:
        """What the update gate ``Δũ_t = σ(W_p s_t + b_p)`` reads of ``state``: ``[B, D]``
        (LSTM: ``c``; GRU: ``h``; stacks: the layers ``gate_layers`` names)."""


class Cell(NamedTuple):
    """A recurrent cell as pure functions (eq. 1 for plain cells, eqs. 2-5 for skip cells).

    Attributes:
      init: :class:`InitFn`, ``init(key, input_size) -> params``.
      initial_state: :class:`InitialStateFn`, ``initial_state(params, batch_size) -> state``.
      step: :class:`StepFn`, ``step(params, state, x, key=None) -> (state, Output)``: the
        function to put in your own ``lax.scan``.
      output: :class:`OutputFn`, ``output(state) -> h``.
      gate_input: :class:`GateInputFn`, ``gate_input(state) -> [B, D]``.
      binarize, max_updates: the update gate's settings for a :class:`SkipCell` (see
        :func:`skip_rnn.skip`); ``None`` for a cell without a gate.
    """

    init: InitFn
    initial_state: InitialStateFn
    step: StepFn
    output: OutputFn
    gate_input: GateInputFn
    binarize: str | None = None
    max_updates: int | None = None


class SkipCell(Cell):
    """A :class:`Cell` with a learned update gate, made by :func:`skip_rnn.skip`: the jumping
    runners (:func:`skip_rnn.jump_unroll`, :func:`skip_rnn.jump_stream`) run these.
    ``binarize`` is ``"round"`` or ``"bernoulli"``; ``max_updates`` the hard budget, or
    ``None``."""


def rows_sharded_like(tree, like: Array):
    """``tree`` (leaves ``[B, ...]``) with its batch axis sharded as that of ``like``
    (``[B, ...]``) where ``like``'s type carries a sharding (an explicit mesh,
    ``jax.sharding.AxisType.Explicit``); elsewhere ``tree`` as it is.

    States, lengths and buffers that a runner builds itself (``cell.initial_state``) start
    replicated; on an explicit mesh a scan refuses a carry whose sharding changes, so the
    runners shard them as the inputs are sharded."""
    spec = jax.typeof(like).sharding.spec
    if not spec or spec[0] is None:
        return tree
    return jax.tree.map(lambda a: jax.sharding.reshard(a, PartitionSpec(spec[0])), tree)


def where_rows(keep_new: Array, new: Array, old: Array) -> Array:
    """Row-wise ``jnp.where``: ``keep_new`` ``[B]`` picks ``new[b]`` or ``old[b]`` (``[B, ...]``).

    The one row-wise select: padded steps (:func:`skip_rnn.unroll`), the jumping runners'
    finished sequences, the skip gate's copy (:func:`skip_rnn._src.skip.select`, its
    differentiable form); any leading axis works, e.g. the members of a population.
    """
    return jnp.where(as_rows(keep_new, new), new, old)


def as_rows(values: Array, like: Array) -> Array:
    """``values`` ``[B]`` as ``[B, 1, ...]``, to broadcast against ``like`` ``[B, ...]``."""
    return values.reshape(values.shape + (1,) * (like.ndim - values.ndim))


def check_number(caller: str, name: str, value: Any, *, integer: bool = False,
                 low: float | None = None, high: float | None = None) -> None:
    """Refuses a concrete ``value`` of argument ``name`` of ``caller`` that is not what is meant.

    The one checker of sizes, counts and rates. ``integer``: a Python or NumPy integer (a count
    or size; ``bool`` and floats refused), else any real number or array of them (a rate, a
    cost; NaN refused). Concrete values must lie in ``[low, high)`` (either bound optional).
    A traced rate or cost (under ``jax.jit``, e.g. one per population member) passes unchecked;
    a count or size must be concrete (it shapes arrays), so ``integer`` refuses a tracer.

    Raises:
      ValueError: naming ``caller``, ``name`` and ``value``.
    """
    if isinstance(value, jax.core.Tracer) and not integer:
        return
    kind = "an integer" if integer else "a real number"
    bounds = [f">= {low}"] * (low is not None) + [f"< {high}"] * (high is not None)
    meant = f"{kind}{' ' if bounds else ''}{' and '.join(bounds)}"
    if integer:
        ok = not isinstance(value, bool | np.bool_) and isinstance(value, int | np.integer)
    else:
        values = np.asarray(value)
        ok = (np.issubdtype(values.dtype, np.floating) or np.issubdtype(values.dtype, np.integer))
        ok = ok and not np.any(np.isnan(values))
    if ok:
        values = np.asarray(value)
        ok = (low is None or bool(np.all(values >= low))) and (
            high is None or bool(np.all(values < high)))
    if not ok:
        raise ValueError(f"{caller}: `{name}` must be {meant}, got {value!r}.")


def check_input(caller: str, x: Array, input_size: int, h: Array) -> None:
    """Refuses an input ``x`` ``[B, ..., F]`` whose ``F`` is not the ``input_size`` that the
    parameters were made for (``init(key, input_size)``), naming both sizes, or whose batch
    axes ``[B, ...]`` are not those of the state ``h`` ``[B, ..., H]`` (one sample would
    otherwise broadcast against every sequence's state)."""
    if x.shape[-1] != input_size:
        raise ValueError(f"{caller}: the input `x` has {x.shape[-1]} features (shape "
                         f"{x.shape}), but the parameters were made for input_size={input_size}.")
    if x.shape[:-1] != h.shape[:-1]:
        raise ValueError(f"{caller}: the input `x` {x.shape} must have the state's batch axes "
                         f"{h.shape[:-1]} (the state has shape {h.shape}).")
