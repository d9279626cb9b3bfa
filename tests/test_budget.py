"""Budget losses (eq. 8 and §3.2, §5) against NumPy, and padding never counts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import skip_rnn as sr

RNG = np.random.default_rng(0)
U = (RNG.uniform(size=(5, 12)) < 0.4).astype(np.float32)


def test_cost_per_sample_is_eq8_averaged_over_the_batch():
    expected = np.mean([1e-3 * sum(row) for row in U])
    np.testing.assert_allclose(sr.budget_loss(jnp.asarray(U), 1e-3), expected, rtol=1e-6)


def test_l1_l2_distance_to_a_target_number_of_updates():
    counts = U.sum(axis=1)
    np.testing.assert_allclose(sr.l1_budget_loss(jnp.asarray(U), 3.0, 0.5),
                               0.5 * np.mean(np.abs(counts - 3.0)), rtol=1e-6)
    np.testing.assert_allclose(sr.l2_budget_loss(jnp.asarray(U), 3.0, 0.5),
                               0.5 * np.mean((counts - 3.0) ** 2), rtol=1e-6)


def test_time_weighted_costs_rise_and_average_lambda():
    costs = np.asarray(sr.rising_costs(12, 1e-3))
    np.testing.assert_allclose(costs, [2e-3 * t / 13 for t in range(1, 13)], rtol=1e-6)
    assert np.all(np.diff(costs) > 0)
    np.testing.assert_allclose(costs.mean(), 1e-3, rtol=1e-6)
    expected = np.mean([sum(c * u for c, u in zip(costs, row, strict=True)) for row in U])
    np.testing.assert_allclose(sr.time_weighted_budget_loss(jnp.asarray(U), costs), expected,
                               rtol=1e-6)


def test_padded_steps_never_count_and_gradient_reaches_the_gate():
    cell = sr.skip(sr.gru(4))
    params = cell.init(jax.random.key(0), 2)
    xs = jax.random.normal(jax.random.key(1), (3, 12, 2))
    lengths = jnp.array([12, 5, 0])

    def loss(params):
        return sr.budget_loss(sr.unroll(cell, params, xs, lengths)[1].u, 1.0)

    def truncated_loss(params):  # each sequence alone, cut at its length: no padding at all
        return sum(sr.budget_loss(sr.unroll(cell, params, xs[b : b + 1, :n])[1].u, 1.0)
                   for b, n in enumerate(lengths.tolist()) if n) / 3

    value, grads = jax.value_and_grad(loss)(params)
    want, want_grads = jax.value_and_grad(truncated_loss)(params)
    padded = sr.unroll(cell, params, xs, lengths)[1].u
    np.testing.assert_array_equal(padded[1, 5:], 0.0)
    np.testing.assert_array_equal(padded[2], 0.0)
    np.testing.assert_allclose(value, want, rtol=1e-6)
    for got, expected in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    assert float(grads["b_p"]) > 0  # more updates cost more: raising b_p raises the loss
