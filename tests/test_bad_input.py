"""The gate contract under bad input: non-finite values, poisoned padding, misuse, the caps."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import skip_rnn as sr
import skip_rnn.nnx
from skip_rnn._src.base import where_rows
from skip_rnn._src.skip import MAX_SKIPS, SkipState, u_tilde_after, update_probability_delta
from skip_rnn.linen import Skip, default_output

B, T, F, H = 3, 8, 2, 4
XS = jax.random.normal(jax.random.key(1), (B, T, F))
CELLS = {
    "lstm": sr.lstm(H),
    "skip_lstm": sr.skip(sr.lstm(H)),
    "skip_stack": sr.skip(sr.stack([sr.gru(H), sr.lstm(H)])),
    "skip_from_linen": sr.skip(sr.from_linen(nn.LSTMCell(H))),
}
SKIP_CELLS = ("skip_lstm", "skip_stack")


@functools.cache
def _params(name):
    """Parameters of ``CELLS[name]`` whose gate both updates and skips on ``XS``."""
    params = CELLS[name].init(jax.random.key(0), F)
    if "b_p" in params:
        params = {**params, "w_p": 3.0 * params["w_p"], "b_p": jnp.asarray(-1.0)}
    return params


@functools.partial(jax.jit, static_argnums=0)
def _unroll(name, params, xs, lengths=None):
    return sr.unroll(CELLS[name], params, xs, lengths)


@functools.partial(jax.jit, static_argnums=0)
def _jump(name, params, xs):
    return sr.jump_unroll(CELLS[name], params, xs)


def _poisoned(name, value):
    """``XS`` with ``value`` at a step that row 0 reads (its second update under ``unroll``) and
    at one that row 1 does not read (a skip); and the step of row 0."""
    u = np.asarray(_unroll(name, _params(name), XS)[1].u)
    read, unread = np.flatnonzero(u[0])[1], np.flatnonzero(u[1] == 0)[0]
    return XS.at[0, read].set(value).at[1, unread].set(value), read


def _stream_reads(name, params, xs):
    """The steps ``[B, T]`` (0/1) that ``jump_stream`` reads, the whole batch pushed at once,
    each row its own next sample."""
    push = jax.jit(sr.jump_stream(CELLS[name]).push)
    state, t = CELLS[name].initial_state(params, xs.shape[0]), np.zeros(xs.shape[0], int)
    reads = np.zeros(xs.shape[:2])
    while np.any(t < xs.shape[1]):
        go, at = t < xs.shape[1], np.minimum(t, xs.shape[1] - 1)
        new_state, _, skips = push(params, state, xs[np.arange(xs.shape[0]), at])
        keep = jnp.asarray(go)
        state = jax.tree.map(lambda n, o, k=keep: where_rows(k, n, o), new_state, state)
        reads[np.flatnonzero(go), at[go]] = 1
        t = np.where(go, t + 1 + np.asarray(skips), t)
    return reads


@pytest.mark.parametrize("value", [np.nan, np.inf], ids=["nan", "inf"])
@pytest.mark.parametrize("name", SKIP_CELLS)
def test_non_finite_input_keeps_u_binary_and_every_runner_reading_as_unroll(name, value):
    params = _params(name)
    xs, read = _poisoned(name, value)
    clean = _unroll(name, params, XS)
    state, out = _unroll(name, params, xs)
    assert set(np.unique(out.u)) <= {0.0, 1.0}
    for got, want in zip(jax.tree.leaves((state, out)), jax.tree.leaves(clean), strict=True):
        np.testing.assert_array_equal(got[1:], want[1:])  # the unread poison changes nothing
    if np.isnan(value):  # a NaN state keeps reading (u = 1) and its outputs stay NaN
        np.testing.assert_array_equal(out.u[0, read:], 1.0)
        assert np.all(np.isnan(out.h[0, read:])) and np.all(np.isnan(out.u_tilde[0, read + 1:]))
    jump_state, jump, info = _jump(name, params, xs)
    for field, got, want in zip(out._fields, jump, out, strict=True):
        np.testing.assert_array_equal(got, want, err_msg=field)  # NaN where NaN
    for got, want in zip(jax.tree.leaves(jump_state), jax.tree.leaves(state), strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(info.num_updates, out.u.sum(axis=1))
    np.testing.assert_array_equal(_stream_reads(name, params, xs), out.u)


def test_a_non_finite_state_is_read_again_at_once():
    np.testing.assert_array_equal(sr.skips_after_update(jnp.array([jnp.nan, 0.3, 1e-9])),
                                  [0, 1, MAX_SKIPS])
    cell, params = CELLS["skip_lstm"], _params("skip_lstm")
    _, h, skips = sr.jump_stream(cell).push(params, cell.initial_state(params, 2),
                                            jnp.array([[jnp.nan, 0.0], [0.0, 0.0]]))
    assert np.isnan(h[0]).all() and np.isfinite(h[1]).all()
    assert int(skips[0]) == 0


def test_bernoulli_gates_update_on_a_non_finite_state():
    cell = sr.skip(sr.gru(H), binarize="bernoulli", update_bias=-3.0)
    params = cell.init(jax.random.key(0), F)
    _, out = sr.unroll(cell, params, XS.at[0, 0].set(jnp.nan), key=jax.random.key(1))
    np.testing.assert_array_equal(out.u[0], 1.0)
    assert 0 < out.u[1:].sum() < 2 * T  # σ(-3): the finite rows skip


def _padded_loss(run):
    """``run(params, xs) -> (final_state, out)`` as a loss: a task loss on the final state's
    output plus the budget loss (eq. 8)."""

    def loss(params, xs):
        state, out = run(params, xs)
        h = jax.tree.leaves(state.cell if isinstance(state, SkipState) else state)[-1]
        return jnp.mean(jnp.square(h - 0.5)) + sr.budget_loss(out.u, 1e-2)

    return loss


LENGTHS = jnp.array([T, 4, 1])
PAD = np.arange(T) >= np.asarray(LENGTHS)[:, None]
POISONED = jnp.where(PAD[..., None], jnp.nan, XS)


def _assert_finite_and_blind_to_padding(grad, params):
    """``grad(params, xs)`` is finite and the same for NaN padding as for ``XS``'s."""
    clean, poisoned = grad(params, XS), grad(params, POISONED)
    for path, got in jax.tree_util.tree_leaves_with_path(poisoned):
        assert np.all(np.isfinite(got)), jax.tree_util.keystr(path)
    for got, want in zip(jax.tree.leaves(poisoned), jax.tree.leaves(clean), strict=True):
        np.testing.assert_array_equal(got, want)
    assert any(np.any(g != 0) for g in jax.tree.leaves(clean))


@pytest.mark.parametrize("name", sorted(CELLS))
def test_nan_padding_reaches_no_gradient_of_unroll(name):
    grad = jax.jit(jax.grad(_padded_loss(lambda p, xs: sr.unroll(CELLS[name], p, xs, LENGTHS))))
    _assert_finite_and_blind_to_padding(grad, _params(name))


def test_nan_padding_reaches_no_gradient_through_linen_and_nnx_with_zero_padding():
    cell = Skip(nn.LSTMCell(H))
    rnn = nn.RNN(cell, return_carry=True)
    variables = rnn.init(jax.random.key(0), XS)

    def linen(params, xs):
        return rnn.apply(params, sr.zero_padding(xs, LENGTHS), seq_lengths=LENGTHS)

    _assert_finite_and_blind_to_padding(jax.jit(jax.grad(_padded_count_loss(linen))),
                                        variables)
    rngs = nnx.Rngs(0)
    model = nnx.RNN(skip_rnn.nnx.Skip(nnx.LSTMCell(F, H, rngs=rngs), rngs=rngs),
                    return_carry=True)

    def nnx_run(rnn, xs):
        return rnn(sr.zero_padding(xs, LENGTHS), seq_lengths=LENGTHS)

    nnx_grad = nnx.jit(nnx.grad(_padded_count_loss(nnx_run)))
    _assert_finite_and_blind_to_padding(lambda m, xs: nnx.to_pure_dict(nnx_grad(m, xs)), model)


def _padded_count_loss(run):
    """``run(model, xs) -> (carry, hs)`` (Flax's RNNs: the cells return ``h``) as a loss on the
    carry's output plus the budget loss (eq. 8) of its count of updates."""

    def loss(model, xs):
        carry, _ = run(model, xs)
        return jnp.sum(default_output(carry.cell) ** 2) + 1e-2 * jnp.mean(carry.num_updates)

    return loss


@pytest.mark.parametrize("bad, match", [
    (lambda: sr.lstm(True), "lstm: `hidden_size` must be an integer >= 1, got True"),
    (lambda: sr.gru(4.0), "gru: `hidden_size` must be an integer"),
    (lambda: sr.lstm(2).init(jax.random.key(0), 0), "`input_size` must be an integer >= 1"),
    (lambda: sr.skip(sr.gru(2), max_updates=True), "skip: `max_updates` must be an integer"),
    (lambda: sr.skip(sr.gru(2), max_updates=2.0), "`max_updates` must be an integer"),
    (lambda: Skip(nn.GRUCell(2), max_updates=True), "`max_updates` must be an integer"),
    (lambda: sr.skip(sr.skip(sr.gru(2))), "skip: `cell` is already a skip cell"),
    (lambda: sr.stack([sr.gru(2)], gate_layers=(True,)), "`gate_layers` must be an integer"),
    (lambda: sr.random_skip(sr.gru(2), np.float32(1.0)), r"`p_skip` must be a real number >= 0"),
    (lambda: sr.budget_loss(jnp.ones((2, 3)), -1e-3), "budget_loss: `cost_per_sample`"),
    (lambda: sr.budget_loss(jnp.ones((2, 3)), jnp.array([1e-3, -1e-3])), "`cost_per_sample`"),
    (lambda: sr.l1_budget_loss(jnp.ones((2, 3)), 2.0, -1.0), "l1_budget_loss: `weight`"),
    (lambda: sr.l2_budget_loss(jnp.ones((2, 3)), -2.0), "l2_budget_loss: `target_updates`"),
    (lambda: sr.time_weighted_budget_loss(jnp.ones((2, 3)), -jnp.ones(3)), "`cost_per_step`"),
    (lambda: sr.time_weighted_budget_loss(jnp.ones((2, 3)), jnp.ones(4)),
     r"`cost_per_step` must have shape \[T\] = \(3,\) .* got \(4,\)"),
    (lambda: sr.time_weighted_budget_loss(jnp.ones((2, 3)), jnp.ones(1)), r"got \(1,\)"),
    (lambda: sr.time_weighted_budget_loss(jnp.ones((2, 3)), 1e-3), r"got \(\)"),
    (lambda: sr.rising_costs(3, -1e-3), "rising_costs: `cost_per_sample`"),
    (lambda: sr.rising_costs(3.0, 1e-3), "rising_costs: `num_steps` must be an integer"),
    (lambda: sr.unroll(CELLS["lstm"], _params("lstm"), XS, jnp.array([8.0, 4.0, 1.0])),
     "unroll: `lengths` must be integers"),
    (lambda: sr.jump_unroll(CELLS["skip_lstm"], _params("skip_lstm"), XS, LENGTHS > 2),
     "jump_unroll: `lengths` must be integers"),
    (lambda: sr.unroll(CELLS["skip_lstm"], _params("skip_lstm"), XS[:1],
                       initial_state=CELLS["skip_lstm"].initial_state(_params("skip_lstm"), B)),
     r"unroll: `initial_state` must have the batch size of `xs`, 1, .* initial_state.cell.c "
     r"has shape \(3, 4\)"),
    (lambda: sr.jump_unroll(
        CELLS["skip_lstm"], _params("skip_lstm"), XS,
        initial_state=CELLS["skip_lstm"].initial_state(_params("skip_lstm"), 2)),
     r"jump_unroll: `initial_state` must have the batch size of `xs`, 3"),
])
def test_misuse_raises_a_clear_error_naming_the_argument(bad, match):
    with pytest.raises(ValueError, match=match):
        bad()


def test_lists_are_arrays_to_unroll_and_the_budget_losses():
    xs = np.asarray(XS)
    _, out = sr.unroll(CELLS["lstm"], _params("lstm"), xs.tolist())
    np.testing.assert_array_equal(out.h, sr.unroll(CELLS["lstm"], _params("lstm"), xs)[1].h)
    u = jnp.ones((2, 3))
    assert sr.time_weighted_budget_loss(u, [0.1, 0.2, 0.3]) == pytest.approx(0.6)


def test_numpy_integers_are_counts_as_python_ones_are():
    for size in (np.int64(3), np.int32(3)):
        cell = sr.skip(sr.lstm(size), max_updates=np.int64(2))
        assert cell.init(jax.random.key(0), np.int64(F))["w_p"].shape == (3,)
    sr.stack([sr.gru(2), sr.gru(2)], gate_layers=(np.int64(0),))
    Skip(nn.GRUCell(2), max_updates=np.int64(2))


@pytest.mark.parametrize("name", ["lstm", "skip_lstm", "skip_stack"])
def test_a_feature_size_mismatch_names_both_sizes(name):
    with pytest.raises(ValueError, match=r"`x` has 3 features .* made for input_size=2"):
        sr.unroll(CELLS[name], _params(name), jnp.ones((B, T, 3)))


@pytest.mark.parametrize("name", ["lstm", "skip_stack"])
def test_a_step_refuses_one_sample_against_a_batch_of_states(name):
    cell, params = CELLS[name], _params(name)
    with pytest.raises(ValueError, match=r"the input `x` \(1, 2\) must have the state's batch "
                                         r"axes \(3,\)"):
        cell.step(params, cell.initial_state(params, B), jnp.ones((1, F)))


def test_push_refuses_a_sample_without_its_batch_axis():
    cell, params = CELLS["skip_lstm"], _params("skip_lstm")
    runner = sr.jump_stream(cell)
    with pytest.raises(ValueError, match=r"jump_stream: `x` must be .* 1, got shape \(2,\)"):
        runner.push(params, runner.start(params), jnp.ones(F))
    with pytest.raises(ValueError, match=r"batch = 2, got shape \(1, 2\)"):
        runner.push(params, runner.start(params, 2), jnp.ones((1, F)))


def test_push_refuses_a_state_whose_leaves_disagree_on_the_batch():
    cell, params = CELLS["skip_lstm"], _params("skip_lstm")
    runner = sr.jump_stream(cell)
    state = runner.start(params, 2)._replace(cell=runner.start(params, 1).cell)
    with pytest.raises(ValueError, match=r"jump_stream: `state` must have the batch size of "
                                         r"`x`, 2, .* state.cell.c has shape \(1, 4\)"):
        runner.push(params, state, jnp.ones((2, F)))


def _budget_gradient(max_updates, b_p, num_steps):
    """``∂ budget_loss(u, 1) / ∂b_p`` for a skip GRU with the hard budget ``max_updates``."""
    cell = sr.skip(sr.gru(H), max_updates=max_updates)
    params = cell.init(jax.random.key(0), F)

    def budget(b_p):
        u = sr.unroll(cell, {**params, "b_p": b_p}, XS[:, :num_steps])[1].u
        return sr.budget_loss(u, 1.0)

    return float(jax.grad(budget)(jnp.asarray(b_p)))


def test_steps_forced_by_the_hard_budget_pass_no_gradient():
    two = _budget_gradient(2, 1.0, 2)
    assert two > 0  # the second update is the gate's: raising b_p keeps it
    assert _budget_gradient(2, 1.0, T) == two  # the later steps are forced zeros
    assert _budget_gradient(1, 5.0, T) == 0.0  # every step after the first is forced


def test_eq6_cap_unroll_updates_after_as_many_skips_as_the_jumping_runners():
    """After an update with ``Δũ = 1e-9`` eq. 6 would skip ~5e8 steps; every runner updates
    after ``MAX_SKIPS``, and the forced update has no gradient (the cap decided, not the gate).
    ``gradient="paper"``: the skipped steps' ``ũ`` depends on ``b_p``."""
    cell = sr.skip(sr.lstm(H), gradient="paper")
    params = {**_params("skip_lstm"), "b_p": jnp.asarray(-30.0)}
    skipped, delta_u = MAX_SKIPS - 2, jnp.full((1,), 1e-9)
    state = cell.initial_state(params, 1)._replace(
        delta_u=delta_u, num_skips=jnp.full((1,), skipped, jnp.int32),
        u_tilde=u_tilde_after(skipped + 1, delta_u), num_updates=jnp.ones((1,)))

    def u_of(b_p):
        return sr.unroll(cell, {**params, "b_p": b_p}, XS[:1, :4], initial_state=state)[1].u[0]

    np.testing.assert_array_equal(u_of(params["b_p"]), [0.0, 0.0, 1.0, 0.0])
    du = jax.jacobian(u_of)(params["b_p"])
    assert du[1] != 0 and du[2] == 0  # the gate decided step 1, the cap step 2
    assert int(sr.skips_after_update(delta_u)[0]) == MAX_SKIPS
    _, _, skips = sr.jump_stream(cell).push(params, cell.initial_state(params, 1), XS[:1, 0])
    assert int(skips[0]) == MAX_SKIPS  # Δũ = σ(-30 + ...): jumps MAX_SKIPS, then reads


def test_the_gate_product_is_computed_at_highest_precision():
    gate = {"w_p": jnp.ones(H), "b_p": jnp.zeros(())}
    jaxpr = jax.make_jaxpr(update_probability_delta)(gate, jnp.ones((B, H)))
    dots = [e for e in jaxpr.eqns if e.primitive.name == "dot_general"]
    assert dots and all("HIGHEST" in str(e.params["precision"]) for e in dots)


def _eq6_brute_force(delta_u, max_n=2100):
    """Eq. 6 by enumeration: the least ``n >= 1`` with ``n·Δũ >= 0.5``, minus 1; the product
    exact in float64 (a float32 times an integer below 2**24), then rounded to float32 as the
    forward pass rounds it."""
    n = np.arange(1, max_n + 1, dtype=np.float64)
    products = (n[None, :] * np.asarray(delta_u, np.float64)[:, None]).astype(np.float32)
    return np.argmax(products >= np.float32(0.5), axis=1)


def test_skips_after_update_is_eq6_counted_by_brute_force():
    rng = np.random.default_rng(0)
    near_ties = (0.5 / np.arange(1, 400)).astype(np.float32)  # n·Δũ = 0.5 up to rounding
    delta_u = np.concatenate([
        10 ** rng.uniform(-3, 0, 2000), near_ties, np.nextafter(near_ties, 0),
        np.nextafter(near_ties, 1)]).astype(np.float32)
    np.testing.assert_array_equal(sr.skips_after_update(jnp.asarray(delta_u)),
                                  _eq6_brute_force(delta_u))
