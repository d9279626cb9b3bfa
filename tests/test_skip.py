"""Invariants of the skip wrapper, eq. 6, gradients, tracing and the Linen adapter."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import skip_rnn as sr
from skip_rnn._src.skip import select
from skip_rnn.linen import GRUCell, LSTMCell, SkipGRUCell, SkipLSTMCell
from tests.test_adapters import linen_stepwise

B, T, F, H = 4, 30, 3, 6
XS = jax.random.normal(jax.random.key(1), (B, T, F))
CELLS = {
    "lstm": sr.skip(sr.lstm(H)),
    "gru": sr.skip(sr.gru(H)),
    "stack": sr.skip(sr.stack([sr.lstm(H), sr.lstm(H)])),
}


def _params(cell, b_p=0.0, w_scale=1.0, seed=0):
    params = cell.init(jax.random.key(seed), F)
    return {**params, "w_p": w_scale * params["w_p"], "b_p": jnp.asarray(b_p)}


@functools.partial(jax.jit, static_argnums=0)
def _unroll(name, params, xs, lengths=None):
    return sr.unroll(CELLS[name], params, xs, lengths)


def _manual_loop(cell, params, xs):
    """The cell's ``step`` called from a Python loop, keeping every state."""
    states = [cell.initial_state(params, xs.shape[0])]
    outs = []
    for t in range(xs.shape[1]):
        state, out = cell.step(params, states[-1], xs[:, t])
        states.append(state)
        outs.append(out)
    return states, jax.tree.map(lambda *v: jnp.stack(v, 1), *outs)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_manual_loop_equals_scan_and_skips_copy_state_bit_exactly(name):
    cell, params = CELLS[name], _params(CELLS[name], b_p=-0.5, w_scale=3.0)
    states, manual = _manual_loop(cell, params, XS)
    final, out = _unroll(name, params, XS)
    np.testing.assert_allclose(out.h, manual.h, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out.u, manual.u)
    u = np.asarray(manual.u)
    assert 0 < u.sum() < u.size, "the model must both skip and update"
    for t in range(T):
        for b in np.flatnonzero(u[:, t] == 0):
            for new, old in zip(jax.tree.leaves(states[t + 1].cell),
                                jax.tree.leaves(states[t].cell), strict=True):
                np.testing.assert_array_equal(new[b], old[b])  # bit-exact copy
            assert states[t + 1].delta_u[b] == states[t].delta_u[b]  # Δũ carried over


@pytest.mark.parametrize("name", sorted(CELLS))
def test_first_step_always_updates(name):
    _, out = _unroll(name, _params(CELLS[name], b_p=-30.0), XS)
    np.testing.assert_array_equal(out.u[:, 0], 1.0)
    np.testing.assert_array_equal(out.u[:, 1:], 0.0)  # σ(-30) ≈ 0: never again


@pytest.mark.parametrize("name", sorted(CELLS))
def test_initial_bias_one_with_small_weights_updates_every_step(name):
    _, out = _unroll(name, _params(CELLS[name], b_p=1.0, w_scale=0.01), XS)
    np.testing.assert_array_equal(out.u, 1.0)


@pytest.mark.parametrize("seed", range(4))
def test_skips_after_update_equals_observed_skip_runs(seed):
    name = sorted(CELLS)[seed % 3]
    params = _params(CELLS[name], b_p=-0.5 - 0.5 * seed, w_scale=2.0, seed=seed)
    xs = jax.random.normal(jax.random.key(seed), (8, 60, F))
    _, out = _unroll(name, params, xs)
    u, predicted = np.asarray(out.u), np.asarray(sr.skips_after_update(out.delta_u))
    checked = 0
    for b, t in zip(*np.nonzero(u[:, :-1]), strict=True):
        following = u[b, t + 1 :]
        nxt = np.flatnonzero(following)
        if len(nxt):  # a complete skip run between two updates
            assert nxt[0] == predicted[b, t], (b, t)
            checked += 1
        else:
            assert predicted[b, t] >= len(following)
    assert checked > 20


def test_skips_after_update_is_eq6():
    delta_u = jnp.array([1.0, 0.6, 0.5, 0.49, 0.25, 0.2, 0.1, 1e-3, 0.0])
    # min{n >= 1: n·Δũ >= 0.5} - 1
    expected = [0, 0, 0, 1, 1, 2, 4, 499, 2**24 - 1]
    np.testing.assert_array_equal(sr.skips_after_update(delta_u), expected)


def test_straight_through_value_is_hard_and_gradient_is_one():
    soft = jnp.linspace(0.0, 1.0, 11)
    hard = jnp.round(soft)
    np.testing.assert_array_equal(sr.straight_through(soft, hard), hard)
    grad = jax.grad(lambda s: jnp.sum(sr.straight_through(s, jnp.round(s)) * jnp.arange(11.0)))
    np.testing.assert_array_equal(grad(soft), jnp.arange(11.0))  # d u / d ũ = 1
    as_bool = sr.straight_through(soft, soft > 0.5)  # a comparison as `hard`: soft's dtype
    assert as_bool.dtype == soft.dtype
    np.testing.assert_array_equal(as_bool, hard)
    bool_grad = jax.grad(lambda s: jnp.sum(sr.straight_through(s, s > 0.5) * jnp.arange(11.0)))
    np.testing.assert_array_equal(bool_grad(soft), jnp.arange(11.0))


def test_select_copies_exactly_and_has_the_gradient_of_eq3():
    u = jnp.array([1.0, 0.0, 1.0])
    new = jax.random.normal(jax.random.key(0), (3, 4))
    old = jax.random.normal(jax.random.key(1), (3, 4))
    poisoned = new.at[1].set(jnp.nan)  # unused: row 1 skips
    np.testing.assert_array_equal(select(u, poisoned, old), jnp.where(u[:, None] > 0, new, old))
    weights = jnp.arange(12.0).reshape(3, 4)

    def loss(fn):
        return lambda *args: jnp.sum(weights * fn(*args))

    def eq3(u, new, old):
        return u[:, None] * new + (1 - u[:, None]) * old

    for got, want in zip(jax.grad(loss(select), (0, 1, 2))(u, new, old),
                         jax.grad(loss(eq3), (0, 1, 2))(u, new, old), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    tangents = (jnp.ones(3), jnp.ones((3, 4)), -jnp.ones((3, 4)))
    np.testing.assert_allclose(jax.jvp(select, (u, new, old), tangents)[1],
                               jax.jvp(eq3, (u, new, old), tangents)[1], rtol=1e-6)


def test_select_of_a_state_is_eq3_per_leaf_in_value_and_gradient():
    """Leaves of one shape share one broadcast of ``u``'s tangent: the sum over leaves is kept."""
    u = jnp.array([1.0, 0.0, 1.0])
    keys = jax.random.split(jax.random.key(2), 6)
    new = {"c": jax.random.normal(keys[0], (3, 4)), "h": jax.random.normal(keys[1], (3, 4)),
           "m": jax.random.normal(keys[2], (3, 2, 5))}
    old = {"c": jax.random.normal(keys[3], (3, 4)), "h": jax.random.normal(keys[4], (3, 4)),
           "m": jax.random.normal(keys[5], (3, 2, 5))}

    def loss(fn):
        def weighted(u, new, old):
            state = fn(u, new, old)
            return sum(jnp.sum(jnp.arange(leaf.size).reshape(leaf.shape) * jnp.cos(leaf))
                       for leaf in jax.tree.leaves(state))
        return weighted

    def eq3(u, new, old):
        return jax.tree.map(lambda n, o: u.reshape((3,) + (1,) * (n.ndim - 1)) * (n - o) + o,
                            new, old)

    rows = u.astype(bool)
    jax.tree.map(lambda got, n, o: np.testing.assert_array_equal(
        got, jnp.where(rows.reshape((3,) + (1,) * (n.ndim - 1)), n, o)), select(u, new, old),
        new, old)
    for got, want in zip(jax.grad(loss(select), (0, 1, 2))(u, new, old),
                         jax.grad(loss(eq3), (0, 1, 2))(u, new, old), strict=True):
        jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5), got, want)


def _loss(cell, params, xs, cost_per_sample):
    final_state, out = sr.unroll(cell, params, xs)
    task = jnp.mean(jnp.square(cell.output(final_state) - 1.0))
    return task + sr.budget_loss(out.u, cost_per_sample)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_gradients_finite_and_nonzero_for_every_parameter(name):
    cell = CELLS[name]
    params = _params(cell, b_p=0.2, w_scale=3.0)
    grads = jax.grad(_loss, argnums=1)(cell, params, XS, 1e-2)
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        assert np.all(np.isfinite(g)), path
        assert np.any(g != 0), path


def test_budget_loss_lowers_updates_under_sgd():
    cell = CELLS["gru"]
    params = _params(cell, b_p=1.0, w_scale=0.1)
    opt = optax.sgd(1.0)
    opt_state = opt.init(params)

    @jax.jit
    def train_step(params, opt_state):
        grads = jax.grad(lambda p: sr.budget_loss(sr.unroll(cell, p, XS)[1].u, 0.1))(params)
        updates, opt_state = opt.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state

    before = float(_unroll("gru", params, XS)[1].u.sum())
    for _ in range(5):
        params, opt_state = train_step(params, opt_state)
    after = float(_unroll("gru", params, XS)[1].u.sum())
    assert before == B * T and after < 0.8 * before


def test_unroll_traces_once_per_shape():
    traces = []

    @jax.jit
    def run(params, xs):
        traces.append(xs.shape)
        return sr.unroll(CELLS["lstm"], params, xs)[1].h

    params = _params(CELLS["lstm"])
    for xs in (XS, XS + 1, XS[:2], XS[:2] * 2):
        run(params, xs)
    assert traces == [XS.shape, XS[:2].shape]


def test_lengths_final_state_is_state_after_last_valid_step():
    params = _params(CELLS["stack"], b_p=-0.5, w_scale=3.0)
    lengths = jnp.array([T, 17, 5, 0])
    final, out = _unroll("stack", params, XS, lengths)
    for b, n in enumerate(lengths.tolist()):
        alone, alone_out = sr.unroll(CELLS["stack"], params, XS[b : b + 1, :n])
        for got, want in zip(jax.tree.leaves(final), jax.tree.leaves(alone), strict=True):
            np.testing.assert_allclose(got[b], want[0], rtol=1e-5, atol=1e-6)
        assert float(out.u[b].sum()) == float(alone_out.u.sum())
        np.testing.assert_array_equal(out.u[b, n:], 0.0)


def test_max_updates_is_a_hard_budget():
    cell = sr.skip(sr.gru(H), max_updates=3)
    params = _params(cell, b_p=1.0)
    _, out = sr.unroll(cell, params, XS)
    np.testing.assert_array_equal(out.u.sum(axis=1), 3)
    np.testing.assert_array_equal(out.u[:, :3], 1.0)


def test_bernoulli_samples_u_with_probability_u_tilde():
    cell = sr.skip(sr.gru(H), binarize="bernoulli")
    params = _params(cell, b_p=-0.4, w_scale=0.5)
    xs = jax.random.normal(jax.random.key(2), (512, 20, F))
    _, out = jax.jit(lambda p, k: sr.unroll(cell, p, xs, key=k))(params, jax.random.key(3))
    np.testing.assert_array_equal(out.u[:, 0], 1.0)
    assert set(np.unique(out.u)) == {0.0, 1.0}
    # E[u_t | ũ_t] = ũ_t, checked in aggregate: |mean(u - ũ)| within 4 standard errors.
    diff = np.asarray(out.u - out.u_tilde)[:, 1:]
    assert abs(diff.mean()) < 4 * diff.std() / np.sqrt(diff.size)
    with pytest.raises(ValueError, match="pass `key`"):
        sr.unroll(cell, params, xs)


@pytest.mark.parametrize(
    "module, pure",
    [(SkipLSTMCell(H), CELLS["lstm"]), (SkipGRUCell(H), CELLS["gru"]),
     (LSTMCell(H), sr.lstm(H)), (GRUCell(H), sr.gru(H))],
    ids=["skip_lstm", "skip_gru", "lstm", "gru"],
)
def test_flax_rnn_equals_unroll(module, pure):
    rnn = nn.RNN(module)
    variables = rnn.init(jax.random.key(0), XS)
    params = variables["params"]["cell"]["cell"]
    if "b_p" in params:  # make it skip, and give s0 a trained-looking value
        params = {**params, "b_p": jnp.asarray(-0.5), "w_p": 3 * params["w_p"]}
    params = jax.tree.map(lambda p: p + 0.01, params)
    got, out = linen_stepwise(module)({"params": {"cell": {"cell": params}}}, XS)
    _, want = sr.unroll(pure, params, XS)
    np.testing.assert_array_equal(out.u, want.u)  # 1 for the plain cells
    np.testing.assert_allclose(got, want.h, rtol=1e-5, atol=1e-6)  # Flax's contract: h


@pytest.mark.parametrize(
    "bad, match",
    [(lambda: sr.lstm(0), "hidden_size"), (lambda: sr.skip(sr.gru(2), binarize="x"), "binarize"),
     (lambda: sr.skip(sr.gru(2), max_updates=0), "max_updates"),
     (lambda: sr.stack([sr.gru(2)], gate_layers=(3,)), "gate_layers"),
     (lambda: sr.unroll(sr.gru(2), sr.gru(2).init(jax.random.key(0), 1), jnp.ones((2, 3))),
      r"\[batch, time, features\]"),
     (lambda: sr.unroll(sr.gru(2), sr.gru(2).init(jax.random.key(0), 1), jnp.ones((2, 3, 1)),
                        lengths=jnp.array([3, 3, 3])), r"`lengths` must have shape \[batch\]")],
)
def test_bad_arguments_raise_clear_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        bad()


def test_flax_bernoulli_cell_draws_a_key_per_step():
    rnn = nn.RNN(SkipGRUCell(H, binarize="bernoulli", update_bias=-0.3),
                 split_rngs={"params": False, "skip": True})
    variables = rnn.init({"params": jax.random.key(0), "skip": jax.random.key(1)}, XS)
    run = linen_stepwise(SkipGRUCell(H, binarize="bernoulli", update_bias=-0.3),
                         split_rngs={"params": False, "skip": True})
    u = run(variables, XS, rngs={"skip": jax.random.key(2)})[1].u
    np.testing.assert_array_equal(u[:, 0], 1.0)
    assert set(np.unique(u)) == {0.0, 1.0}
    again = run(variables, XS, rngs={"skip": jax.random.key(3)})[1].u
    assert not np.array_equal(u, again)
    # a fresh draw at every step: E[u_t | ũ_t] = ũ_t (one key reused over the steps biases it)
    xs = jax.random.normal(jax.random.key(4), (512, 20, F))
    out = run(variables, xs, rngs={"skip": jax.random.key(5)})[1]
    diff = np.asarray(out.u - out.u_tilde)[:, 1:]
    assert abs(diff.mean()) < 4 * diff.std() / np.sqrt(diff.size)


def test_unroll_from_initial_state_continues_the_sequence():
    cell, params = CELLS["lstm"], _params(CELLS["lstm"], b_p=-0.5, w_scale=3.0)
    whole_state, whole = _unroll("lstm", params, XS)
    half_state, first = sr.unroll(cell, params, XS[:, :12])
    state, second = sr.unroll(cell, params, XS[:, 12:], initial_state=half_state)
    for got, want in zip(jax.tree.leaves((state, second)),
                         jax.tree.leaves((whole_state, jax.tree.map(lambda v: v[:, 12:], whole))),
                         strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert 0 < float(second.u.sum()) < second.u.size
