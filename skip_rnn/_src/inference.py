"""Inference that really skips: no computation and no input read on skipped steps (eq. 6).

After an update at step ``t`` with ``Δũ_t``, a skip cell with ``binarize="round"`` skips
exactly ``N_skip(t) = skips_after_update(Δũ_t)`` steps (eq. 6), so a runner can jump straight
to step ``t + N_skip(t) + 1``. Each update goes through the skip cell's own ``step`` (with
``ũ = 1`` forced), so the arithmetic is that of :func:`skip_rnn.unroll`.

- :func:`jump_unroll`: a batch under ``jax.jit``; every sequence keeps its own time pointer and
  each loop iteration performs one update for all of them, ``max_b(updates_b)`` iterations.
- :func:`jump_stream`: one sample at a time, for online use; it says how many of the coming
  samples the model will not read, so the caller can sleep the sensor or drop frames.

Jumping needs deterministic rounding: a ``binarize="bernoulli"`` model cannot know ahead of
time which steps it skips, and is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from skip_rnn._src.base import (
    Array,
    Output,
    Params,
    SkipCell,
    check_number,
    rows_sharded_like,
    serializable,
    where_rows,
)
from skip_rnn._src.skip import MAX_SKIPS, SkipState, skips_after_update, u_tilde_after
from skip_rnn._src.unroll import (
    check_sequences,
    checked_initial_state,
    checked_lengths,
    take_steps,
    unroll,
)


@serializable
class JumpInfo(NamedTuple):
    """Work done by :func:`jump_unroll`: ``num_updates`` ``[B]`` (int32) and
    ``num_iterations`` (int32 scalar, ``= max_b num_updates_b``)."""

    num_updates: Array
    num_iterations: Array


class JumpStream(NamedTuple):
    """Streaming runner, a pair of pure functions (see :func:`jump_stream`).

    Attributes:
      start: ``start(params, batch_size=1) -> state``.
      push: ``push(params, state, x) -> (state, h, skips)`` with ``x`` ``[B, F]`` the next sample
        the model reads; ``h`` ``[B, H]``; ``skips`` int32 ``[B]``, the number of samples that
        follow which the model will not read: eq. 6, at most ``2**24 - 1`` (after that many
        skips the model reads again, as :func:`skip_rnn.unroll` does), 0 if the state is not
        finite (the model keeps reading). Once ``max_updates`` are spent it is ``2**24 - 1``
        and no sample will be read again.
    """

    start: Callable[..., SkipState]
    push: Callable[[Params, SkipState, Array], tuple[SkipState, Array, Array]]


def jump_unroll(
    cell: SkipCell,
    params: Params,
    xs: Array,
    lengths: Array | None = None,
    initial_state: SkipState | None = None,
    *,
    chunk: int | None = None,
) -> tuple[SkipState, Output, JumpInfo]:
    """Runs a skip cell over ``xs`` computing only the steps that update.

    Returns what :func:`skip_rnn.unroll` returns (bit-for-bit where the arithmetic is the same,
    else within float rounding) plus a :class:`JumpInfo`. Inputs at skipped steps are never
    read. The dense outputs are filled in after the loop: ``out.h`` at a skipped step is the
    last update's output; ``out.u_tilde`` follows eq. 5 in closed form. With ``T = 0`` it returns
    the initial state and empty outputs, with no updates.

    For inference: the loop is a ``lax.while_loop`` whose length depends on the gates, which
    reverse-mode differentiation cannot go through; train with :func:`skip_rnn.unroll` (the
    same numbers). It composes with ``jax.jit`` and ``jax.vmap`` (e.g. over a population's
    parameters).

    Args:
      cell: a skip cell from :func:`skip_rnn.skip` with ``binarize="round"``.
      params: its parameters.
      xs: ``[B, T, F]``, or ``[B, T, ..., F]`` (as :func:`skip_rnn.unroll`); any array type.
      lengths: optional integer ``[B]`` (any integer dtype); steps ``t >= lengths[b]`` are
        padding. As in :func:`skip_rnn.unroll`: in ``[0, T]``; concrete values outside it raise
        ``ValueError``, traced ones are clipped to it.
      initial_state: optional state to continue from (default ``cell.initial_state``): the
        ``final_state`` of an earlier call (or of :func:`skip_rnn.unroll`) over the steps
        before ``xs``; jumping over ``xs[:, :k]`` then ``xs[:, k:]`` equals one call over ``xs``.
      chunk: loop iterations per trip of the ``while_loop`` test (``fori_loop`` of ``chunk``
        inside; finished sequences do nothing): on accelerators each test is a round trip to
        the host. ``None``: 1 on the CPU, 8 elsewhere. A speed setting only.

    Returns:
      ``(final_state, out, info)``; ``info.num_updates`` counts the updates of this call.
    """
    _check_jumpable(cell)
    xs = jnp.asarray(xs)
    check_sequences("jump_unroll", xs)
    if chunk is not None:
        check_number("jump_unroll", "chunk", chunk, integer=True, low=1)
    batch_size, num_steps = xs.shape[:2]
    initial_state = (cell.initial_state(params, batch_size) if initial_state is None
                     else checked_initial_state("jump_unroll", initial_state, batch_size))
    limit = (jnp.full((batch_size,), num_steps, jnp.int32) if lengths is None
             else checked_lengths("jump_unroll", lengths, batch_size, num_steps))
    if num_steps == 0:  # nothing to read or jump over
        final_state, out = unroll(cell, params, xs, initial_state=initial_state)
        no_updates = jnp.zeros((batch_size,), jnp.int32)
        return final_state, out, JumpInfo(no_updates, jnp.zeros((), jnp.int32))
    limit, state = rows_sharded_like((limit, initial_state), xs)
    h0 = cell.output(state)

    class Loop(NamedTuple):
        state: SkipState
        t: Array  # [B] the next step each sequence updates at
        iteration: Array  # scalar; updates are recorded at this index:
        h: Array  # [B, T, H] output of each update
        at: Array  # [B, T] its step (T: none)
        delta_u: Array  # [B, T] its Δũ

    def active(loop: Loop) -> Array:
        within = loop.t < limit
        if cell.max_updates is not None:
            within &= loop.state.num_updates < cell.max_updates
        return within

    def iterate(loop: Loop) -> Loop:
        go = active(loop)
        x = where_rows(go, take_steps(xs, jnp.minimum(loop.t, num_steps - 1)[:, None])[:, 0], 0)
        new_state, h, skips = _update(cell, params, loop.state, x)
        state = jax.tree.map(lambda new, old: where_rows(go, new, old), new_state, loop.state)

        def record(records: Array, value: Array) -> Array:  # idle rows keep the slot's value
            kept = jax.lax.dynamic_index_in_dim(records, loop.iteration, 1, keepdims=False)
            return jax.lax.dynamic_update_index_in_dim(records, where_rows(go, value, kept),
                                                       loop.iteration, 1)

        return Loop(state, jnp.where(go, loop.t + 1 + skips, loop.t),
                    loop.iteration + jnp.any(go).astype(jnp.int32), record(loop.h, h),
                    record(loop.at, loop.t), record(loop.delta_u, new_state.delta_u))

    chunk = chunk or (1 if jax.default_backend() == "cpu" else 8)
    body = iterate if chunk == 1 else (
        lambda loop: jax.lax.fori_loop(0, chunk, lambda _, loop: iterate(loop), loop))
    init = Loop(
        state,
        _first_update(state),
        jnp.zeros((), jnp.int32),
        *rows_sharded_like((jnp.zeros((batch_size, num_steps, *h0.shape[1:]), h0.dtype),
                            jnp.full((batch_size, num_steps), num_steps, jnp.int32),
                            jnp.zeros((batch_size, num_steps), state.delta_u.dtype)), xs),
    )
    loop = jax.lax.while_loop(lambda loop: jnp.any(active(loop)), body, init)
    updates = jnp.sum(loop.at < num_steps, axis=1, dtype=jnp.int32)
    out = _dense_outputs(loop.h, loop.at, loop.delta_u, limit, state, h0, lengths is not None)
    final_state = _skipped_to_end(loop.state, loop.at, updates, limit, state.num_skips)
    return final_state, out, JumpInfo(updates, loop.iteration)


def _first_update(state: SkipState) -> Array:
    """``[B]``: the first step at which a sequence in ``state`` updates: 0 if ``ũ`` rounds to
    1, else once the skips that eq. 6 gives its last update's ``Δũ`` are over."""
    remaining = skips_after_update(state.delta_u) - state.num_skips
    return jnp.where(state.u_tilde >= 0.5, 0, jnp.maximum(remaining, 0)).astype(jnp.int32)


def jump_stream(cell: SkipCell) -> JumpStream:
    """A streaming runner for a skip cell with ``binarize="round"``: one update per sample read.

    Example (a sensor read only when the model asks for it):
      >>> import jax, jax.numpy as jnp, skip_rnn as sr
      >>> cell = sr.skip(sr.lstm(16))
      >>> params = cell.init(jax.random.key(0), 1)
      >>> runner = sr.jump_stream(cell)
      >>> push = jax.jit(runner.push)
      >>> state, t, reads = runner.start(params), 0, 0
      >>> while t < 100:
      ...     sample = jnp.sin(0.3 * t).reshape(1, 1)
      ...     state, h, skips = push(params, state, sample)
      ...     t, reads = t + 1 + int(skips[0]), reads + 1
    """
    _check_jumpable(cell)

    def start(params: Params, batch_size: int = 1) -> SkipState:
        return cell.initial_state(params, batch_size)

    def push(params: Params, state: SkipState, x: Array):
        batch_size = state.u_tilde.shape[0]
        if x.ndim < 2 or x.shape[0] != batch_size:
            raise ValueError(f"jump_stream: `x` must be one sample per sequence, [batch, "
                             f"features] with batch = {batch_size}, got shape {x.shape}.")
        state = checked_initial_state("jump_stream", state, batch_size, names=("state", "x"))
        return _update(cell, params, rows_sharded_like(state, x), x)

    return JumpStream(start, push)


def _update(cell: SkipCell, params: Params, state: SkipState, x: Array):
    """One state update (``ũ = 1`` forced) and the number of steps it will skip next."""
    new_state, out = cell.step(params, state._replace(u_tilde=jnp.ones_like(state.u_tilde)), x)
    skips = skips_after_update(new_state.delta_u)
    if cell.max_updates is not None:  # the budget is spent: never read again
        skips = jnp.where(new_state.num_updates >= cell.max_updates, MAX_SKIPS, skips)
    return new_state, out.h, skips


def _dense_outputs(h_at, at, delta_u_at, limit, state, h0, mask_padding: bool) -> Output:
    """Per-step outputs ``[B, T, ...]`` from the updates' records (``at``: their steps), after
    ``state`` (its output ``h0``); the gate's in the dtype of ``delta_u_at`` (float32 whatever
    ``h``'s), as ``unroll``'s. Before a row's first update here, its ``ũ`` grows from the
    state's last update, ``num_skips + 1`` steps before step 0 (the initial state: ``Δũ = 1``,
    one step before)."""
    num_steps = at.shape[1]
    steps = jnp.arange(num_steps)
    u = jax.vmap(lambda row: jnp.zeros(num_steps, delta_u_at.dtype).at[row].set(
        1, mode="drop"))(at)
    count = jnp.cumsum(u.astype(jnp.int32), axis=1)  # updates at or before each step

    def of_update(records, index, before):  # records[b, index[b, t]], or `before` if < 0
        value = jnp.take_along_axis(records, jnp.maximum(index, 0), axis=1)
        return jnp.where(index >= 0, value, before)

    last = count - 1
    last_h = last.reshape(last.shape + (1,) * (h_at.ndim - 2))
    h = of_update(h_at, last_h, h0[:, None])
    delta_u = of_update(delta_u_at, last, state.delta_u[:, None])
    before = last - u.astype(jnp.int32)  # the last update strictly before each step
    since = steps - of_update(at, before, -1 - state.num_skips[:, None])
    u_tilde = u_tilde_after(since, of_update(delta_u_at, before, state.delta_u[:, None]))
    if mask_padding:
        valid = steps[None, :] < limit[:, None]
        delta_u, u_tilde = (jnp.where(valid, v, 0) for v in (delta_u, u_tilde))
    return Output(h, u, u_tilde, delta_u)


def _skipped_to_end(state: SkipState, at: Array, updates: Array, limit: Array,
                    num_skips_before: Array) -> SkipState:
    """The state after the skips that follow the last update (``updates`` ``[B]`` of them
    here, at steps ``at``), up to each sequence's end; a row that made none here skipped its
    ``limit`` steps after the ``num_skips_before`` it had skipped already."""
    last = jnp.take_along_axis(at, jnp.maximum(updates - 1, 0)[:, None], 1)[:, 0]
    num_skips = jnp.where(updates > 0, limit - 1 - last, num_skips_before + limit)
    num_skips = num_skips.astype(jnp.int32)
    return state._replace(num_skips=num_skips,
                          u_tilde=u_tilde_after(num_skips + 1, state.delta_u))


def _check_jumpable(cell: SkipCell) -> None:
    if not isinstance(cell, SkipCell):
        raise TypeError("jumping runs a skip cell: wrap the cell with skip_rnn.skip(...).")
    if cell.binarize != "round":
        raise ValueError(
            f"jumping needs deterministic rounding (binarize='round'); this cell has "
            f"binarize={cell.binarize!r}, whose skips cannot be known ahead of time. Run it "
            "with skip_rnn.unroll instead."
        )
