"""The jumping runners against ``sr.unroll``: same results, fewer iterations, no skipped reads."""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import skip_rnn as sr

B, T, F, H = 5, 40, 2, 6
CELLS = {
    "lstm": sr.skip(sr.lstm(H)),
    "gru": sr.skip(sr.gru(H)),
    "stack": sr.skip(sr.stack([sr.gru(H), sr.lstm(H)])),
    "budget": sr.skip(sr.lstm(H), max_updates=4),
}
# b_p for update rates from ~100% down to ~5%.
BIASES = {"dense": 8.0, "half": -0.2, "sparse": -3.0}


def _params(name, bias, seed=0):
    params = CELLS[name].init(jax.random.key(seed), F)
    return {**params, "b_p": jnp.asarray(bias), "w_p": 2.0 * params["w_p"]}


@functools.partial(jax.jit, static_argnums=0)
def _dense(name, params, xs, lengths):
    return sr.unroll(CELLS[name], params, xs, lengths)


@functools.partial(jax.jit, static_argnums=0)
def _jump(name, params, xs, lengths):
    return sr.jump_unroll(CELLS[name], params, xs, lengths)


def _assert_same(got_state, got, want_state, want):
    np.testing.assert_array_equal(got.u, want.u)
    for field in ("h", "u_tilde", "delta_u"):
        np.testing.assert_allclose(getattr(got, field), getattr(want, field), rtol=1e-6,
                                   atol=1e-7, err_msg=field)
    for g, w in zip(jax.tree.leaves(got_state), jax.tree.leaves(want_state), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("rate", sorted(BIASES))
@pytest.mark.parametrize("name", sorted(CELLS))
def test_jump_unroll_equals_unroll(name, rate):
    params = _params(name, BIASES[rate])
    xs = jax.random.normal(jax.random.key(1), (B, T, F))
    lengths = jnp.array([T, T - 3, 17, 1, 0])
    want_state, want = _dense(name, params, xs, lengths)
    state, out, info = _jump(name, params, xs, lengths)
    _assert_same(state, out, want_state, want)
    updates = want.u.sum(axis=1)
    np.testing.assert_array_equal(info.num_updates, updates)
    assert int(info.num_iterations) == int(updates.max())


def test_jump_unroll_without_lengths_equals_unroll():
    params = _params("budget", BIASES["half"])
    xs = jax.random.normal(jax.random.key(5), (B, T, F))
    want_state, want = _dense("budget", params, xs, None)
    state, out, info = _jump("budget", params, xs, None)
    _assert_same(state, out, want_state, want)
    np.testing.assert_array_equal(info.num_updates, want.u.sum(axis=1))
    assert 0 < float(want.u.sum()) < want.u.size


def test_update_rates_span_five_to_hundred_percent():
    xs = jax.random.normal(jax.random.key(1), (B, T, F))
    rates = [float(_dense("lstm", _params("lstm", b), xs, None)[1].u.mean())
             for b in BIASES.values()]
    assert max(rates) == 1.0 and min(rates) <= 0.1


@pytest.mark.parametrize("name", sorted(CELLS))
def test_nan_inputs_at_skipped_steps_change_neither_runner(name):
    """``jump_unroll`` never reads them; ``unroll`` reads them but copies the state exactly."""
    params = _params(name, BIASES["half"])
    xs = jax.random.normal(jax.random.key(2), (B, T, F))
    lengths = jnp.array([T, T, 30, 12, 5])
    clean = _dense(name, params, xs, lengths)
    unused = (clean[1].u == 0)[..., None]
    assert unused.any()
    poisoned = jnp.where(unused, jnp.nan, xs)
    dense_state, dense = _dense(name, params, poisoned, lengths)
    for got, want in zip(jax.tree.leaves((dense_state, dense)), jax.tree.leaves(clean),
                         strict=True):
        np.testing.assert_array_equal(got, want)  # finite, bit for bit
    state, out, _ = _jump(name, params, poisoned, lengths)
    _assert_same(state, out, dense_state, dense)


@pytest.mark.parametrize("lengths", [None, jnp.zeros((B,), jnp.int32)])
def test_jump_unroll_without_steps_returns_what_unroll_returns(lengths):
    params = _params("stack", BIASES["half"])
    xs = jnp.zeros((B, 0, F))
    want_state, want = sr.unroll(CELLS["stack"], params, xs, lengths)
    state, out, info = sr.jump_unroll(CELLS["stack"], params, xs, lengths)
    for got, expected in zip(jax.tree.leaves((state, out)), jax.tree.leaves((want_state, want)),
                             strict=True):
        assert got.shape == expected.shape and got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)
    # and what that is, independently: the initial state, and outputs with no time axis
    initial = CELLS["stack"].initial_state(params, B)
    jax.tree.map(np.testing.assert_array_equal, state, initial)
    assert out.h.shape == (B, 0, H) and out.u.shape == (B, 0)
    np.testing.assert_array_equal(info.num_updates, 0)
    assert int(info.num_iterations) == 0


@pytest.mark.parametrize("lengths, says", [
    (jnp.ones((B,), jnp.int32), "`lengths` must be in [0, 0]"),
    (jnp.zeros((B,), jnp.float32), "`lengths` must be integers"),
    (jnp.zeros((B + 1,), jnp.int32), "`lengths` must have shape [batch]"),
])
def test_jump_unroll_without_steps_checks_lengths_as_unroll_does(lengths, says):
    params = _params("stack", BIASES["half"])
    xs = jnp.zeros((B, 0, F))
    for runner in (sr.unroll, sr.jump_unroll):
        with pytest.raises(ValueError, match=re.escape(says)):
            runner(CELLS["stack"], params, xs, lengths)


@pytest.mark.parametrize("bad", [T + 1, -1])
@pytest.mark.parametrize("runner", [sr.unroll, sr.jump_unroll])
def test_concrete_lengths_outside_the_time_axis_raise(runner, bad):
    params = _params("lstm", BIASES["half"])
    lengths = jnp.array([T, bad, 3, 2, 1])
    with pytest.raises(ValueError, match=rf"`lengths` must be in \[0, {T}\]"):
        runner(CELLS["lstm"], params, jnp.zeros((B, T, F)), lengths)


def test_traced_lengths_outside_the_time_axis_are_clipped():
    params = _params("lstm", BIASES["half"])
    xs = jax.random.normal(jax.random.key(4), (B, T, F))
    lengths, clipped = jnp.array([T + 7, T, -3, 1, 0]), jnp.array([T, T, 0, 1, 0])
    for run in (_dense, _jump):
        for got, want in zip(jax.tree.leaves(run("lstm", params, xs, lengths)),
                             jax.tree.leaves(run("lstm", params, xs, clipped)), strict=True):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", ["gru", "budget"])
def test_stream_reads_only_the_samples_it_asks_for(name):
    params = _params(name, BIASES["half"], seed=3)
    xs = jax.random.normal(jax.random.key(3), (1, T, F))
    _, want = _dense(name, params, xs, None)
    runner = sr.jump_stream(CELLS[name])
    push = jax.jit(runner.push)
    state, t, read = runner.start(params), 0, []
    while t < T:
        state, h, skips = push(params, state, xs[:, t])
        np.testing.assert_allclose(h, want.h[:, t], rtol=1e-6, atol=1e-7)
        read.append(t)
        t += 1 + int(skips[0])
    np.testing.assert_array_equal(np.flatnonzero(want.u[0]), read)


def test_bernoulli_and_plain_cells_are_refused():
    with pytest.raises(ValueError, match="deterministic rounding"):
        sr.jump_stream(sr.skip(sr.gru(2), binarize="bernoulli"))
    with pytest.raises(TypeError, match="skip cell"):
        sr.jump_unroll(sr.gru(2), {}, jnp.ones((1, 2, 1)))
