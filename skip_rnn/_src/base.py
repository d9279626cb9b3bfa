"""The cell contract shared by every recurrent cell in this package.

A cell is a ``NamedTuple`` of pure functions (the optax pattern). Factories such as
:func:`skip_rnn.lstm` and :func:`skip_rnn.skip` build cells; :func:`skip_rnn.unroll` runs any
cell over a sequence. Shapes use ``B`` = batch, ``T`` = time, ``F`` = input features,
``H`` = hidden units.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

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
    """What a cell emits at one step (leaves ``[B, ...]``) or :func:`unroll` over a sequence
    (leaves ``[B, T, ...]``).

    Attributes:
      h: output of the (top) layer, ``[B, H]``; on a skipped step the copied state's output.
      u: binary state update gate ``u_t`` (eq. 2), ``[B]``; its gradient is straight-through.
      u_tilde: update probability ``ũ_t`` (eq. 5) that ``u_t`` binarizes, ``[B]``.
      delta_u: ``Δũ_t`` (eq. 4), ``[B]``; carried over unchanged on skipped steps.

    Plain cells have ``u = u_tilde = delta_u = 1``.
    """

    h: Array
    u: Array
    u_tilde: Array
    delta_u: Array


class Cell(NamedTuple):
    """A recurrent cell as pure functions.

    Attributes:
      init: ``init(key, input_size) -> params``; a pytree of arrays (layout documented by
        each factory). The learned initial state ``s_0`` is part of it.
      initial_state: ``initial_state(params, batch_size) -> state``, ``s_0`` broadcast to
        ``[B, ...]``.
      step: ``step(params, state, x, key=None) -> (state, output)`` with ``x`` ``[B, F]``; the
        per-time-step function (eq. 1 for plain cells, eqs. 2-5 for skip cells). ``output``
        is ``h`` ``[B, H]`` for plain cells and an :class:`Output` for skip cells. ``key`` is
        used only by stochastic cells.
      output: ``output(state) -> h``, ``[B, H]``: the output a state stands for.
      gate_input: ``gate_input(state) -> [B, D]``: the part of the state that the update
        gate ``Δũ_t = σ(W_p s_t + b_p)`` reads (LSTM: ``c``; GRU: ``h``; stacks: chosen layers).
    """

    init: Callable[[PRNGKey, int], Params]
    initial_state: Callable[[Params, int], State]
    step: Callable[..., tuple[State, Any]]
    output: Callable[[State], Array]
    gate_input: Callable[[State], Array]


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
    cost; NaN refused). Concrete values must lie in ``[low, high)`` (either bound optional);
    traced values (under ``jax.jit``) pass unchecked.

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


def check_features(caller: str, x: Array, input_size: int) -> None:
    """Refuses an input ``x`` ``[B, ..., F]`` whose ``F`` is not the ``input_size`` that the
    parameters were made for (``init(key, input_size)``), naming both sizes."""
    if x.shape[-1] != input_size:
        raise ValueError(f"{caller}: the input `x` has {x.shape[-1]} features (shape "
                         f"{x.shape}), but the parameters were made for input_size={input_size}.")
