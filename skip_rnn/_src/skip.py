r"""The Skip RNN wrapper (paper §3, eqs. 2-7).

.. math::
    u_t &= f_\mathrm{binarize}(\tilde u_t) && (2) \\
    s_t &= u_t \cdot S(s_{t-1}, x_t) + (1 - u_t) \cdot s_{t-1} && (3) \\
    \Delta\tilde u_t &= \sigma(W_p s_t + b_p) && (4) \\
    \tilde u_{t+1} &= u_t \cdot \Delta\tilde u_t
        + (1 - u_t) \cdot (\tilde u_t + \min(\Delta\tilde u_t, 1 - \tilde u_t)) && (5)

with ``ũ_1 = 1`` (the first step always updates). ``f_binarize`` has a straight-through
gradient (eq. 7). When ``u_t = 0``, ``s_t = s_{t-1}``, so ``Δũ_t = Δũ_{t-1}`` and the forward
pass carries it over instead of recomputing it (Fig. 1d, §3 after eq. 6).

Three gradient forms, with the same forward values bit for bit (``skip(..., gradient=)``); they
differ in which expressions of eqs. 3-5 they differentiate:

* ``"paper"``: eqs. 2-5 as printed. ``Δũ_t = σ(W_p s_t + b_p)`` of the blended ``s_t`` of eq.
  3, so ``∂Δũ_t/∂u_t = σ'·W_p (S(s_{t-1}, x_t) − s_{t-1})``, and on a skipped step ``Δũ_t``
  reads ``s_{t-1}`` (not ``Δũ_{t-1}``); eq. 5 as printed.
* ``"eq5"``: Fig. 1's placement, as in the authors' code: ``Δũ_t = u_t·σ(W_p S(s_{t-1}, x_t)
  + b_p) + (1 − u_t)·Δũ_{t-1}``, so ``∂Δũ_t/∂u_t = σ(W_p S + b_p) − Δũ_{t-1}`` and a skipped
  step's ``Δũ_t`` reads ``Δũ_{t-1}``; eq. 5 as printed.
* ``"reference_code"``: the recurrence of the authors' TensorFlow code, which produced the
  paper's tables (``imatge-upc/skiprnn-2017-telecombcn``, ``src/rnn_cells/skip_rnn_cells.py``).
  ``Δũ_t`` as ``"eq5"``; it carries ``(1 - u_t)·ũ_t`` and ``Δũ_t``, and
  ``ũ_{t+1} = (1 - u_t)·ũ_t + min(Δũ_t, 1 - (1 - u_t)·ũ_t)``: equal to eq. 5 for ``u_t`` in
  {0, 1}, but its straight-through gradient through ``u_t`` differs (e.g. Skip LSTM, ``W_p = 0``,
  ``b_p = 1``, ``s = σ(1)``: ``∂u_3/∂b_p`` is ``s·s'`` with eq. 5 and ``(1 - s)·s'`` with
  the authors' code, ``s' = s(1 - s)``).

After ``k`` consecutive skips eq. 5 equals ``min((k + 1)·Δũ, 1)``. The forward pass takes
``ũ`` in that closed form (the backward pass is eq. 5's own gradient), so that the number of
skips after an update is *exactly* eq. 6 in floating point, ``skips_after_update(Δũ)``, and
:func:`skip_rnn.jump_unroll` can jump ahead bit-for-bit in agreement with :func:`skip_rnn.unroll`.

Precision: the update gate's path is float32 whatever the wrapped cell's ``dtype``
(:func:`gate_dtype`): ``W_p s_t + b_p`` and its sigmoid (the state ``s_t`` read exactly, a
bfloat16 value is a float32 value), ``u_t``, ``ũ_t``, its closed form and the count of eq. 6.
A bfloat16 ``ũ`` would round ``(k + 1)·Δũ`` to 8 bits. ``w_p`` and ``b_p`` are stored in float32.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from skip_rnn._src.base import (
    Array,
    Cell,
    Output,
    Params,
    PRNGKey,
    SkipCell,
    State,
    as_rows,
    check_number,
    serializable,
    where_rows,
)

GRADIENTS = ("paper", "eq5", "reference_code")

# Counts of skips saturate here: float32 represents every integer up to 2**24 exactly. After
# MAX_SKIPS consecutive skips the next step updates (eq. 6's cap), in every runner.
_MAX_STEPS = 2**24
MAX_SKIPS = _MAX_STEPS - 1


@serializable
class SkipState(NamedTuple):
    """State of a skip cell; every leaf has a leading batch axis ``[B]``.

    Attributes:
      cell: the wrapped cell's state ``s_{t-1}``.
      u_tilde: ``ũ_t``, the update probability for the coming step (:func:`gate_dtype`).
      delta_u: ``Δũ`` of the last update (eq. 4; carried over on skips; :func:`gate_dtype`).
      num_skips: consecutive skipped steps since the last update (int32).
      num_updates: state updates made so far, ``Σ u`` in :func:`gate_dtype` (an exact
        integer up to ``2**24``) with ``u``'s straight-through gradient: eq. 8's count, so that
        ``λ·mean(final_state.num_updates)`` is :func:`skip_rnn.budget_loss` of the gates (for
        Flax's ``nn.RNN``, whose cells return ``h`` only); bounds the hard budget.
    """

    cell: State
    u_tilde: Array
    delta_u: Array
    num_skips: Array
    num_updates: Array


def gate_dtype(params: Params) -> jnp.dtype:
    """The dtype of the update gate's path (``Δũ``, ``ũ``, ``u``): float32, or ``b_p``'s if it is
    wider (float64 under ``jax.enable_x64`` with float64 parameters); never the wrapped cell's
    bfloat16 or float16. ``params`` needs only ``"b_p"``."""
    return jnp.promote_types(jnp.float32, jnp.result_type(params["b_p"]))


@jax.custom_jvp
def straight_through(soft: Array, hard: Array) -> Array:
    """The value of ``hard`` with the gradient of ``soft`` (eq. 7: ``∂hard/∂soft = 1``).

    The value is ``hard`` exactly, even where ``soft`` is not finite (``x + stop_gradient(
    round(x) - x)`` can miss 1 by a rounding error, and is NaN for a NaN ``x``), in the dtype
    the two promote to (a bool ``hard`` such as ``soft >= 0.5`` comes back in ``soft``'s float
    dtype); the tangent is ``soft``'s, none flows through ``hard``.
    """
    return jnp.asarray(hard, jnp.result_type(soft, hard))


@straight_through.defjvp
def _straight_through_jvp(primals: tuple[Array, Array], tangents: tuple[Array, Array]):
    (soft, hard), (dsoft, _) = primals, tangents
    value = straight_through(soft, hard)
    return value, jnp.broadcast_to(dsoft, value.shape).astype(value.dtype)


def skips_after_update(delta_u: Array) -> Array:
    """Eq. 6: steps skipped after an update with ``Δũ``: ``min{n ∈ Z+ : n·Δũ ≥ 0.5} − 1``.

    Exact in floating point (``n·Δũ`` is rounded as :func:`skip` rounds it), so it agrees with
    the skip runs of :func:`skip_rnn.unroll` under ``binarize="round"``. Capped at
    ``MAX_SKIPS = 2**24 - 1`` (``Δũ`` below ~3e-8, or 0): after that many skips every runner
    updates. A non-finite ``Δũ`` gives 0: the next step updates (``ũ`` is then not finite,
    which counts as "update").

    Args:
      delta_u: ``Δũ`` at update steps, any shape, values in ``[0, 1]`` or NaN.

    Returns:
      int32 array of the same shape.
    """
    delta_u = jnp.asarray(delta_u)
    n = jnp.minimum(jnp.ceil(0.5 / delta_u), _MAX_STEPS)
    # ceil(0.5 / Δũ) is within [-1, 2] of the exact minimum; test the four candidates.
    candidates = n[..., None] + jnp.arange(-2, 2, dtype=n.dtype)
    ok = (candidates >= 1) & (u_tilde_after(candidates, delta_u[..., None]) >= 0.5)
    n = jnp.min(jnp.where(ok, candidates, _MAX_STEPS), axis=-1)
    return jnp.where(jnp.isfinite(delta_u), n.astype(jnp.int32) - 1, 0)


def skip(
    cell: Cell,
    binarize: Literal["round", "bernoulli"] = "round",
    update_bias: float = 1.0,
    max_updates: int | None = None,
    gradient: Literal["paper", "eq5", "reference_code"] = "eq5",
) -> SkipCell:
    """Wraps ``cell`` into a Skip RNN cell (eqs. 2-5).

    Parameters: ``{"cell": <cell params>, "w_p": [D], "b_p": []}`` where ``D`` is the size of
    ``cell.gate_input(state)``; ``b_p`` starts at ``update_bias`` so that every step updates
    early in training; ``w_p``, ``b_p`` float32 (:func:`init_gate`). The state is a
    :class:`SkipState`; ``step`` (:func:`gated_step`) emits an :class:`skip_rnn.Output`. A
    skipped step copies the whole wrapped state bit-exactly. The wrapped cell computes in its
    own ``dtype`` (``out.h`` too); the gate in float32 (:func:`gate_dtype`: ``out.u``,
    ``out.u_tilde``, ``out.delta_u``).

    Args:
      cell: the wrapped cell (``lstm``, ``gru``, ``stack`` ...).
      binarize: ``"round"`` (``u = 1`` iff ``ũ ≥ 0.5``, the paper's choice, so eq. 6 holds) or
        ``"bernoulli"`` (``u ~ Bernoulli(ũ)``; ``step`` then needs a ``key``). A ``key``
        given to ``step`` also reaches ``cell`` as ``fold_in(key, 1)``, for a cell that draws
        (a stack with a :func:`random_skip` layer).
      update_bias: initial ``b_p``.
      max_updates: hard budget (§5): once a sequence made this many updates, ``u_t = 0``, with
        no gradient (the budget, not the gate, decided).
      gradient: how ``Δũ_t`` and ``ũ_{t+1}`` are differentiated: ``"paper"`` (eqs. 2-5 as
        printed), ``"eq5"`` (``Δũ_t`` placed as in Fig. 1, eq. 5 as printed) or
        ``"reference_code"`` (the authors' code); see the module docstring. Forward values
        are the same.

    Example:
      >>> import jax, jax.numpy as jnp, skip_rnn as sr
      >>> cell = sr.skip(sr.lstm(8))
      >>> params = cell.init(jax.random.key(0), 3)
      >>> state, out = sr.unroll(cell, params, jnp.ones((2, 5, 3)))
      >>> out.u.shape, out.h.shape
      ((2, 5), (2, 5, 8))
    """
    if isinstance(cell, SkipCell):
        raise ValueError("skip: `cell` is already a skip cell; wrap the plain cell once.")
    check_settings(binarize, max_updates, gradient)

    def init(key: PRNGKey, input_size: int) -> Params:
        cell_params = cell.init(jax.random.split(key)[0], input_size)
        gate_size = cell.gate_input(cell.initial_state(cell_params, 1)).shape[-1]
        return {"cell": cell_params, **init_gate(key, gate_size, update_bias)}

    def initial_state(params: Params, batch_size: int) -> SkipState:
        return initial_skip_state(cell.initial_state(params["cell"], batch_size), batch_size,
                                  gate_dtype(params))

    def step(params: Params, state: SkipState, x: Array, key: PRNGKey | None = None):
        cell_key = None if key is None else jax.random.fold_in(key, 1)  # for a cell that draws
        return gated_step(functools.partial(cell.step, params["cell"], key=cell_key),
                          cell.gate_input, cell.output, params, state, x, key, binarize=binarize,
                          max_updates=max_updates, gradient=gradient)

    return SkipCell(
        init,
        initial_state,
        step,
        output=lambda s: cell.output(s.cell),
        gate_input=lambda s: cell.gate_input(s.cell),
        binarize=binarize,
        max_updates=max_updates,
    )


def check_settings(binarize: str, max_updates: int | None, gradient: str) -> None:
    """Refuses settings of :func:`skip` (``binarize``, ``max_updates``, ``gradient``) that it
    does not know, naming the argument."""
    if binarize not in ("round", "bernoulli"):
        raise ValueError(f"skip: `binarize` must be 'round' or 'bernoulli', got {binarize!r}.")
    if max_updates is not None:
        check_number("skip", "max_updates", max_updates, integer=True, low=1)
    if gradient not in GRADIENTS:
        raise ValueError(f"skip: `gradient` must be one of {GRADIENTS}, got {gradient!r}.")


def init_gate(key: PRNGKey, gate_size: int, update_bias: float = 1.0) -> Params:
    """The update gate's parameters as :func:`skip`'s ``init`` draws them from ``key``:
    ``{"w_p": [gate_size], "b_p": []}``, ``w_p`` LeCun-normal from the second key of
    ``jax.random.split(key)`` (the first initialises the wrapped cell), ``b_p = update_bias``;
    float32. The Linen and NNX ``Skip`` adapters draw theirs with it."""
    w_p = jax.nn.initializers.lecun_normal()(jax.random.split(key)[1], (gate_size, 1),
                                               jnp.float32)[:, 0]
    return {"w_p": w_p, "b_p": jnp.asarray(update_bias, jnp.float32)}


def initial_skip_state(cell_state: State, batch_size: int, dtype: jnp.dtype) -> SkipState:
    """The :class:`SkipState` around the wrapped cell's initial ``cell_state``: ``ũ_1 = 1`` (the
    first step updates), ``Δũ = 1``, no skips nor updates yet; the gate's leaves in ``dtype``
    (:func:`gate_dtype`)."""
    ones = jnp.ones((batch_size,), dtype)
    return SkipState(cell_state, ones, ones, jnp.zeros((batch_size,), jnp.int32),
                     jnp.zeros((batch_size,), dtype))


def gated_step(
    cell_step: Callable[[State, Array], tuple[State, object]],
    gate_input: Callable[[State], Array],
    output: Callable[[State], Array],
    gate: Params,
    state: SkipState,
    x: Array,
    key: PRNGKey | None = None,
    *,
    binarize: str = "round",
    max_updates: int | None = None,
    gradient: str = "eq5",
) -> tuple[SkipState, Output]:
    """One step of eqs. 2-5 around the wrapped cell: the ``step`` of :func:`skip`, and of the
    Linen and NNX ``Skip`` adapters, whose wrapped cell holds its own parameters.

    Args:
      cell_step: ``cell_step(cell_state, x) -> (cell_state, _)``, the wrapped cell's step with
        its parameters applied (``functools.partial(cell.step, params["cell"])``).
      gate_input, output: the wrapped cell's (:class:`skip_rnn.Cell`).
      gate: the gate's parameters, ``"w_p"`` ``[D]`` and ``"b_p"`` ``[]`` (other keys are not
        read: a skip cell's whole parameters do).
      state: the :class:`SkipState` ``s_{t-1}``; ``x``: the input ``[B, ...]``.
      key: draws ``u_t`` with ``binarize="bernoulli"``.
      binarize, max_updates, gradient: as in :func:`skip`.

    Returns:
      ``(state, out)``: the :class:`SkipState` ``s_t`` and the step's :class:`skip_rnn.Output`.

    The settings are checked where they are given (:func:`skip`, the adapters' constructors,
    with :func:`check_settings`), not at every step.
    """
    hard, gate_decides = _capped(_binarize(binarize, state.u_tilde, key), state, max_updates)
    u_tilde = jnp.where(gate_decides, state.u_tilde, jax.lax.stop_gradient(state.u_tilde))
    u = straight_through(u_tilde, hard)
    candidate, _ = cell_step(state.cell, x)
    cell_state = select(u, candidate, state.cell)
    new_delta_u = update_probability_delta(gate, gate_input(candidate))
    delta_u = select(u, new_delta_u, state.delta_u)
    if gradient == "paper":
        delta_u = with_eq4_derivative(delta_u, gate, gate_input(cell_state))
    num_skips = jnp.where(hard > 0, 0, state.num_skips + 1)
    new_state = SkipState(
        cell=cell_state,
        u_tilde=straight_through(next_u_tilde(gradient, u, state.u_tilde, delta_u),
                                 u_tilde_after(num_skips + 1, delta_u)),
        delta_u=delta_u,
        num_skips=num_skips,
        num_updates=state.num_updates + u,
    )
    return new_state, Output(output(cell_state), u, state.u_tilde, delta_u)


def _capped(hard: Array, state: SkipState, max_updates: int | None) -> tuple[Array, Array]:
    """``hard`` ``[B]`` after the caps: an update once ``MAX_SKIPS`` steps were skipped (eq. 6's
    cap), none once ``max_updates`` are spent; and where the gate, not a cap, decided."""
    gate_decides = state.num_skips < MAX_SKIPS
    hard = jnp.where(gate_decides, hard, 1.0)
    if max_updates is not None:
        within = state.num_updates < max_updates
        hard, gate_decides = jnp.where(within, hard, 0.0), gate_decides & within
    return hard, gate_decides


def u_tilde_after(num_steps: Array, delta_u: Array) -> Array:
    """Eq. 5 in closed form: ``ũ`` ``num_steps`` steps after an update with ``Δũ`` (after ``k``
    skips, ``num_steps = k + 1``) is ``min(num_steps·Δũ, 1)``, computed in ``Δũ``'s dtype.

    The one place this product is rounded: the forward pass of :func:`skip` (through
    :func:`gated_step`), eq. 6's count (:func:`skips_after_update`) and the jumping runners'
    ``ũ`` (:mod:`skip_rnn.inference`) all take it from here, so they agree bit for bit.
    """
    return jnp.minimum(jnp.asarray(num_steps).astype(delta_u.dtype) * delta_u, 1)


def next_u_tilde(gradient: str, u: Array, u_tilde: Array, delta_u: Array) -> Array:
    """``ũ_{t+1}`` from ``u_t``, ``ũ_t`` and ``Δũ_t`` (all ``[B]``), in the form whose gradient
    ``gradient`` names: the authors' code (``cum = (1 - u)·ũ`` carried) for
    ``"reference_code"``, eq. 5 as printed otherwise."""
    if gradient == "reference_code":
        carried = (1 - u) * u_tilde
        return carried + _min(delta_u, 1 - carried)
    skipped = u_tilde + _min(delta_u, 1 - u_tilde)
    return skipped + u * (delta_u - skipped)


def _min(a: Array, b: Array) -> Array:
    """``min(a, b)``, differentiated as ``a`` where ``a <= b`` and as ``b`` elsewhere: one mask
    for the backward pass to keep (``jnp.minimum`` keeps two weights, splitting ties)."""
    return jnp.where(a <= b, a, b)


def update_probability_delta(params: Params, gate_input: Array) -> Array:
    """Eq. 4: ``Δũ = σ(W_p s + b_p)``; ``gate_input`` ``[B, D]`` -> ``[B]``, computed in
    :func:`gate_dtype` whatever the dtype of ``gate_input``."""
    dtype = gate_dtype(params)
    # HIGHEST: no TF32 (NVIDIA GPUs) nor bfloat16 passes (TPUs) in the number that decides
    # every skip; a length-D dot costs nothing more.
    logit = jnp.matmul(gate_input.astype(dtype), params["w_p"].astype(dtype),
                       precision=jax.lax.Precision.HIGHEST) + params["b_p"].astype(dtype)
    return jax.nn.sigmoid(logit)


def with_eq4_derivative(delta_u: Array, params: Params, gate_input: Array) -> Array:
    """``Δũ_t`` as the forward pass carries it, differentiated as eq. 4 of eq. 3's ``s_t``.

    The value is ``delta_u`` ``[B]`` (``σ(W_p S(s_{t-1}, x_t) + b_p)`` at an update,
    ``Δũ_{t-1}`` at a skip); the derivative is that of ``σ(W_p s_t + b_p)`` with ``s_t`` read
    by ``gate_input`` ``[B, D]``, the blended state of eq. 3. The two are equal in value: at an
    update ``s_t = S(s_{t-1}, x_t)``, at a skip ``s_t = s_{t-1}`` and
    ``Δũ_{t-1} = σ(W_p s_{t-1} + b_p)`` (§3, after eq. 6). Only the derivative reads
    ``gate_input``, so a forward pass computes exactly what the other gradient forms compute.
    """
    return _with_eq4_derivative(delta_u, params["w_p"], params["b_p"], gate_input)


@jax.custom_jvp
def _with_eq4_derivative(delta_u: Array, w_p: Array, b_p: Array, gate_input: Array) -> Array:
    del w_p, b_p, gate_input
    return delta_u


@_with_eq4_derivative.defjvp
def _with_eq4_derivative_jvp(primals: tuple[Array, ...], tangents: tuple[Array, ...]):
    (delta_u, w_p, b_p, gate_input), (_, dw_p, db_p, dgate_input) = primals, tangents
    _, ddelta_u = jax.jvp(lambda w, b, s: update_probability_delta({"w_p": w, "b_p": b}, s),
                          (w_p, b_p, gate_input), (dw_p, db_p, dgate_input))
    return delta_u, ddelta_u


def select(u: Array, new: State, old: State) -> State:
    """Eq. 3 for a state: ``u·new + (1 - u)·old`` per leaf, with ``u`` ``[B]`` in {0, 1}.

    The value is a true select, ``new[b]`` or ``old[b]`` bit for bit, so a skipped step copies
    ``old`` even where the unused ``new`` is not finite (``0·NaN`` would be NaN); the gradient is
    that of the arithmetic form: ``new - old`` for ``u`` (straight-through), ``u`` for ``new``
    and ``1 - u`` for ``old``. (So a non-finite ``new`` at a skipped step still reaches
    ``∂/∂u``, as in eq. 3 differentiated.)

    Args:
      u: ``[B]`` gate values, 0. or 1.
      new, old: pytrees of the same structure, leaves ``[B, ...]``, pairwise of one shape and
        dtype.

    Returns:
      ``new``'s structure; each leaf in the dtype of ``new``'s.
    """
    # Recomputed in the backward pass from `u`, `new` and `old` (which it keeps anyway), so that
    # the forward pass keeps neither `new - old` nor `u` broadcast per leaf: fewer ops per step.
    return jax.checkpoint(_select)(u, new, old)


@jax.custom_jvp
def _select(u: Array, new: State, old: State) -> State:
    return jax.tree.map(lambda n, o: where_rows(u > 0, n, o), new, old)


@_select.defjvp
def _select_jvp(primals: tuple[Array, State, State], tangents: tuple[Array, State, State]):
    (u, new, old), (du, dnew, dold) = primals, tangents
    # One broadcast of `du` per leaf shape and dtype, shared by those leaves: the backward pass
    # sums their `∂L/∂s·(new - old)` first and reduces over the features once (the LSTM's `c`
    # and `h` in one reduction, not two).
    du_like = {}

    def tangent(n: Array, o: Array, dn: Array, do: Array) -> Array:
        if not jnp.issubdtype(n.dtype, jnp.inexact):  # a count (an inner SkipState's): float0
            return np.zeros(n.shape, jax.dtypes.float0)
        key = (n.shape, n.dtype)
        if key not in du_like:
            du_like[key] = jnp.broadcast_to(as_rows(du.astype(n.dtype), n), n.shape)
        u_rows = as_rows(u.astype(n.dtype), n)
        return du_like[key] * (n - o) + u_rows * dn + (1 - u_rows) * do

    return _select(u, new, old), jax.tree.map(tangent, new, old, dnew, dold)


def _binarize(kind: str, u_tilde: Array, key: PRNGKey | None) -> Array:
    """``u_t`` in {0, 1} from ``ũ_t`` ``[B]``; a non-finite ``ũ_t`` gives 1 (fail-safe: the
    model keeps reading)."""
    if kind == "round":
        update = u_tilde >= 0.5
    elif key is None:
        raise ValueError("skip(binarize='bernoulli') samples u_t: pass `key` to unroll/step.")
    else:
        update = jax.random.bernoulli(key, u_tilde)
    return (update | ~jnp.isfinite(u_tilde)).astype(u_tilde.dtype)
