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

from skip_rnn.base import Array, Output, Params, where_rows
from skip_rnn.skip import MAX_SKIPS, SkipCell, SkipState, skips_after_update, u_tilde_after
from skip_rnn.unroll import checked_lengths, unroll


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
    cell: SkipCell, params: Params, xs: Array, lengths: Array | None = None
) -> tuple[SkipState, Output, JumpInfo]:
    """Runs a skip cell over ``xs`` computing only the steps that update.

    Returns what :func:`skip_rnn.unroll` returns (bit-for-bit where the arithmetic is the same,
    else within float rounding) plus a :class:`JumpInfo`. Inputs at skipped steps are never
    read. The dense outputs are filled in after the loop: ``out.h`` at a skipped step is the
    last update's output; ``out.u_tilde`` follows eq. 5 in closed form. With ``T = 0`` it returns
    ``unroll``'s initial state and empty outputs, with no updates.

    Args:
      cell: a skip cell from :func:`skip_rnn.skip` with ``binarize="round"``.
      params: its parameters.
      xs: ``[B, T, F]``, or ``[B, T, ..., F]`` (as :func:`skip_rnn.unroll`).
      lengths: optional int ``[B]``; steps ``t >= lengths[b]`` are padding. As in
        :func:`skip_rnn.unroll`: in ``[0, T]``; concrete values outside it raise ``ValueError``,
        traced ones are clipped to it.

    Returns:
      ``(final_state, out, info)``.
    """
    _check_jumpable(cell)
    batch_size, num_steps = xs.shape[:2]
    rows = jnp.arange(batch_size)
    limit = (jnp.full((batch_size,), num_steps) if lengths is None
             else checked_lengths("jump_unroll", lengths, batch_size, num_steps))
    if num_steps == 0:  # nothing to read or jump over
        final_state, out = unroll(cell, params, xs)
        return final_state, out, JumpInfo(final_state.num_updates, jnp.zeros((), jnp.int32))
    state = cell.initial_state(params, batch_size)
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

    def body(loop: Loop) -> Loop:
        go = active(loop)
        x = where_rows(go, xs[rows, jnp.minimum(loop.t, num_steps - 1)], 0)
        new_state, h, skips = _update(cell, params, loop.state, x)
        state = jax.tree.map(lambda new, old: where_rows(go, new, old), new_state, loop.state)
        records = zip((loop.h, loop.at, loop.delta_u),
                      (h, jnp.where(go, loop.t, num_steps), new_state.delta_u), strict=True)
        return Loop(
            state,
            jnp.where(go, loop.t + 1 + skips, loop.t),
            loop.iteration + 1,
            *(jax.lax.dynamic_update_index_in_dim(r, v, loop.iteration, 1) for r, v in records),
        )

    init = Loop(
        state,
        jnp.zeros_like(limit),
        jnp.zeros((), jnp.int32),
        jnp.zeros((batch_size, num_steps, *h0.shape[1:]), h0.dtype),
        jnp.full((batch_size, num_steps), num_steps),
        jnp.zeros((batch_size, num_steps), state.delta_u.dtype),
    )
    loop = jax.lax.while_loop(lambda loop: jnp.any(active(loop)), body, init)
    out = _dense_outputs(loop.h, loop.at, loop.delta_u, limit, h0, lengths is not None)
    final_state = _skipped_to_end(loop.state, loop.at, limit)
    return final_state, out, JumpInfo(loop.state.num_updates, loop.iteration)


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
        return _update(cell, params, state, x)

    return JumpStream(start, push)


def _update(cell: SkipCell, params: Params, state: SkipState, x: Array):
    """One state update (``ũ = 1`` forced) and the number of steps it will skip next."""
    new_state, out = cell.step(params, state._replace(u_tilde=jnp.ones_like(state.u_tilde)), x)
    skips = skips_after_update(new_state.delta_u)
    if cell.max_updates is not None:  # the budget is spent: never read again
        skips = jnp.where(new_state.num_updates >= cell.max_updates, MAX_SKIPS, skips)
    return new_state, out.h, skips


def _dense_outputs(h_at, at, delta_u_at, limit, h0, mask_padding: bool) -> Output:
    """Per-step outputs ``[B, T, ...]`` from the updates' records (``at``: their steps); the
    gate's in the dtype of ``delta_u_at`` (float32 whatever ``h``'s), as ``unroll``'s."""
    batch_size, num_steps = at.shape
    steps = jnp.arange(num_steps)
    u = jnp.zeros(at.shape, delta_u_at.dtype).at[jnp.arange(batch_size)[:, None], at].set(
        1, mode="drop")
    count = jnp.cumsum(u.astype(jnp.int32), axis=1)  # updates at or before each step

    def of_update(records, index):  # records[b, index[b, t]]
        return jnp.take_along_axis(records, jnp.maximum(index, 0), axis=1)

    last = count - 1
    last_h = last.reshape(last.shape + (1,) * (h_at.ndim - 2))
    h = jnp.where(last_h >= 0, of_update(h_at, last_h), h0[:, None])
    delta_u = of_update(delta_u_at, last)
    before = last - u.astype(jnp.int32)  # the last update strictly before each step
    since = steps - of_update(at, before)
    u_tilde = jnp.where(before >= 0, u_tilde_after(since, of_update(delta_u_at, before)), 1)
    if mask_padding:
        valid = steps[None, :] < limit[:, None]
        delta_u, u_tilde = (jnp.where(valid, v, 0) for v in (delta_u, u_tilde))
    return Output(h, u, u_tilde, delta_u)


def _skipped_to_end(state: SkipState, at: Array, limit: Array) -> SkipState:
    """The state after the skips that follow the last update, up to each sequence's end."""
    last = jnp.take_along_axis(at, jnp.maximum(state.num_updates - 1, 0)[:, None], 1)[:, 0]
    updated = state.num_updates > 0
    num_skips = jnp.where(updated, limit - 1 - last, 0).astype(jnp.int32)
    u_tilde = u_tilde_after(num_skips + 1, state.delta_u)
    return state._replace(num_skips=num_skips, u_tilde=jnp.where(updated, u_tilde, 1))


def _check_jumpable(cell: SkipCell) -> None:
    if not isinstance(cell, SkipCell):
        raise TypeError("jumping runs a skip cell: wrap the cell with skip_rnn.skip(...).")
    if cell.binarize != "round":
        raise ValueError(
            f"jumping needs deterministic rounding (binarize='round'); this cell has "
            f"binarize={cell.binarize!r}, whose skips cannot be known ahead of time. Run it "
            "with skip_rnn.unroll instead."
        )
