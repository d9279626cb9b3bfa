"""Runs any cell over a batch of sequences with ``jax.lax.scan`` (one trace per shape)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from skip_rnn._src.base import (
    Array,
    Cell,
    Output,
    Params,
    PRNGKey,
    State,
    rows_sharded_like,
    where_rows,
)


def unroll(
    cell: Cell,
    params: Params,
    xs: Array,
    lengths: Array | None = None,
    key: PRNGKey | None = None,
    initial_state: State | None = None,
    *,
    unroll: int | bool = 1,
    reverse: bool = False,
    remat: bool = False,
) -> tuple[State, Output]:
    """Runs ``cell`` over ``xs`` and returns ``(final_state, out)``.

    Plain and skip cells share this one code path; for plain cells ``out.u`` is 1 at every
    valid step. With ``lengths``, steps ``t >= lengths[b]`` change nothing: the state stays
    that of the last valid step (so ``final_state`` is it), ``out.h`` repeats its output, and
    ``out.u``, ``out.u_tilde``, ``out.delta_u`` are 0 there, so padding never counts as updates.
    The step there reads a zero input (:func:`zero_padding`), never the padding itself, so
    whatever the padding holds (NaN, Inf) reaches neither the outputs nor any gradient.

    Args:
      cell: any :class:`skip_rnn.Cell`.
      params: ``cell.init(...)``'s pytree.
      xs: inputs ``[B, T, F]``, or ``[B, T, ..., F]`` for cells with spatial inputs
        (``from_linen(nn.ConvLSTMCell(...))``: ``[B, T, height, width, F]``).
      lengths: optional int ``[B]``, valid steps per sequence, in ``[0, T]``: concrete values
        outside it raise ``ValueError``; traced ones (under ``jax.jit``) are clipped to it.
      key: randomness for stochastic cells (``skip(..., binarize="bernoulli")``), split into
        one key per step.
      initial_state: optional state to start from (default ``cell.initial_state``), e.g. to
        continue a sequence chunk by chunk.
      unroll: steps per iteration of the ``lax.scan`` loop (``True``: all), passed to it; a
        speed setting only, for any ``T`` (a multiple of it or not): the same gates, and
        outputs and gradients equal to ``unroll=1``'s up to float rounding.
      reverse: read each sequence's valid steps from last to first (step ``lengths[b] - 1``
        first, step 0 last; the padding stays at the end, untouched); ``out`` stays in input
        order (Flax's ``keep_order=True``), so ``out.h[:, t]`` is the output after reading
        ``xs[:, t]``. The backward half of a bidirectional RNN.
      remat: recompute each step in the backward pass instead of storing its intermediates
        (``jax.checkpoint``): the same values and gradients, less memory on long sequences.

    Returns:
      ``final_state`` (leaves ``[B, ...]``) and an :class:`Output` with ``h`` ``[B, T, H]`` and
      ``u``, ``u_tilde``, ``delta_u`` ``[B, T]``.
    """
    xs = jnp.asarray(xs)
    check_sequences("unroll", xs)
    batch_size, num_steps = xs.shape[:2]
    state = (cell.initial_state(params, batch_size) if initial_state is None
             else checked_initial_state("unroll", initial_state, batch_size))
    state = rows_sharded_like(state, xs)
    valid = None
    if lengths is not None:
        lengths = rows_sharded_like(checked_lengths("unroll", lengths, batch_size, num_steps), xs)
        valid = jnp.arange(num_steps)[:, None] < lengths[None, :]
        xs = zero_padding(xs, lengths)
    keys = None if key is None else jax.random.split(key, num_steps)
    order = None
    if reverse:
        order = rows_sharded_like(_reversed_order(batch_size, num_steps, lengths), xs)
        xs = take_steps(xs, order)
    step = jax.checkpoint(cell.step) if remat else cell.step

    def body(state: State, inputs: tuple[Array, Array | None, PRNGKey | None]):
        x, valid_t, key_t = inputs
        new_state, out = step(params, state, x, key_t)
        if valid_t is None:
            return new_state, out
        state = jax.tree.map(lambda new, old: where_rows(valid_t, new, old), new_state, state)
        return state, out._replace(h=cell.output(state))

    final_state, out = jax.lax.scan(body, state, (jnp.swapaxes(xs, 0, 1), valid, keys),
                                    unroll=unroll)
    out = jax.tree.map(lambda v: jnp.swapaxes(v, 0, 1), out)
    if order is not None:
        out = jax.tree.map(lambda v: take_steps(v, order), out)
    return final_state, out if lengths is None else mask_padding(out, lengths)


def _reversed_order(batch_size: int, num_steps: int, lengths: Array | None) -> Array:
    """``[B, T]`` step indices that reverse each row's valid steps ``[0, lengths[b])`` and keep
    its padding in place; the permutation is its own inverse."""
    steps = jnp.arange(num_steps)
    if lengths is None:
        return jnp.broadcast_to(steps[::-1], (batch_size, num_steps))
    return jnp.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)


def take_steps(values: Array, steps: Array) -> Array:
    """``values[b, steps[b, k]]`` for ``values`` ``[B, T, ...]`` and ``steps`` ``[B, K]``: each
    row's own steps (sharded as ``values``'s rows are)."""
    index = steps.reshape(steps.shape + (1,) * (values.ndim - 2))
    return jnp.take_along_axis(values, index, axis=1)


def checked_initial_state(caller: str, state: State, batch_size: int,
                          names: tuple[str, str] = ("initial_state", "xs")) -> State:
    """``state`` after a check that every leaf is ``[B, ...]`` with the inputs' ``B``.

    Raises:
      ValueError: naming ``caller``, the arguments ``names`` (the state's, the inputs') and the
        first leaf whose leading axis is not ``B``.
    """
    state_name, inputs_name = names
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        if jnp.ndim(leaf) == 0 or jnp.shape(leaf)[0] != batch_size:
            raise ValueError(f"{caller}: `{state_name}` must have the batch size of "
                             f"`{inputs_name}`, {batch_size}, on every leaf's first axis; "
                             f"{state_name}{jax.tree_util.keystr(path)} has shape "
                             f"{jnp.shape(leaf)}.")
    return state


def check_sequences(caller: str, xs: Array) -> None:
    """Refuses ``xs`` without the ``[batch, time, features]`` axes, naming ``caller``."""
    if xs.ndim < 3:
        raise ValueError(f"{caller}: `xs` must be [batch, time, features], got shape "
                         f"{xs.shape}.")


def mask_padding(out: Output, lengths: Array) -> Output:
    """``out`` with ``u``, ``ũ`` and ``Δũ`` set to 0 on padded steps ``t >= lengths[b]``.

    :func:`unroll` with ``lengths`` applies it to what it returns. Flax's ``nn.RNN`` and
    ``nnx.RNN`` with ``seq_lengths`` run the cell over the padding too, and
    :class:`skip_rnn.linen.Skip`, :class:`skip_rnn.nnx.Skip` gate those steps: masking their
    output makes the budget losses count valid steps only, with :func:`unroll`'s value and
    gradient. ``h`` is left as it is.

    Args:
      out: per-step outputs, ``h`` ``[B, T, ...]`` and ``u``, ``u_tilde``, ``delta_u``
        ``[B, T]``.
      lengths: int ``[B]``, valid steps per sequence, in ``[0, T]`` (checked as in
        :func:`unroll`).

    Returns:
      ``out`` with ``u``, ``u_tilde``, ``delta_u`` zero at padded steps.
    """
    batch_size, num_steps = out.u.shape
    lengths = checked_lengths("mask_padding", lengths, batch_size, num_steps)
    valid = jnp.arange(num_steps) < lengths[:, None]
    return out._replace(u=jnp.where(valid, out.u, 0), u_tilde=jnp.where(valid, out.u_tilde, 0),
                        delta_u=jnp.where(valid, out.delta_u, 0))


def zero_padding(xs: Array, lengths: Array) -> Array:
    """``xs`` ``[B, T, ...]`` with zeros at padded steps ``t >= lengths[b]``, in both passes.

    :func:`unroll` with ``lengths`` reads its inputs through it. Flax's ``nn.RNN`` and
    ``nnx.RNN`` with ``seq_lengths`` run the cell on the padding: give them
    ``zero_padding(xs, lengths)``, so that NaN or Inf there cannot reach a gradient (the
    backward pass of a step whose output is discarded still multiplies 0 by its derivatives).

    Args:
      xs: ``[B, T, ...]``.
      lengths: int ``[B]``, valid steps per sequence, in ``[0, T]`` (checked as in
        :func:`unroll`).
    """
    batch_size, num_steps = xs.shape[:2]
    lengths = checked_lengths("zero_padding", lengths, batch_size, num_steps)
    valid = jnp.arange(num_steps) < lengths[:, None]
    return jnp.where(valid.reshape(valid.shape + (1,) * (xs.ndim - 2)), xs, 0)


def checked_lengths(caller: str, lengths: Array, batch_size: int, num_steps: int) -> Array:
    """``lengths`` ``[B]`` clipped to ``[0, T]``, as int32, after a check that concrete values
    lie there (any integer dtype: uint8 lengths of 300-step sequences too).

    Traced values (under ``jax.jit``) cannot be checked at trace time, nor arrays spread over
    several processes without a gather: they are clipped, a length above ``T`` means ``T``, a
    negative one 0.

    Raises:
      ValueError: naming ``caller``, if the dtype is not an integer one, the shape is not ``[B]``
        or concrete values are outside ``[0, T]``.
    """
    lengths = jnp.asarray(lengths)
    if not jnp.issubdtype(lengths.dtype, jnp.integer):
        raise ValueError(f"{caller}: `lengths` must be integers (valid steps per sequence), "
                         f"got dtype {lengths.dtype}.")
    if lengths.shape != (batch_size,):
        raise ValueError(f"{caller}: `lengths` must have shape [batch] = ({batch_size},), "
                         f"got {lengths.shape}.")
    if not isinstance(lengths, jax.core.Tracer) and lengths.is_fully_addressable:
        values = np.asarray(lengths)
        if not np.all((values >= 0) & (values <= num_steps)):
            raise ValueError(f"{caller}: `lengths` must be in [0, {num_steps}] (the time axis "
                             f"of `xs`), got {values.tolist()}.")
    # Clipped in their own dtype (T itself may not fit in it: 300 in uint8), then int32.
    return jnp.clip(lengths, 0, min(num_steps, jnp.iinfo(lengths.dtype).max)).astype(jnp.int32)
