"""``sr.unroll`` against the independent NumPy reference of the paper's equations (float64)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import skip_rnn as sr
from tests import reference

B, T, F = 3, 12, 2
MODELS = {  # name: (layer kinds, factory)
    "lstm": (["lstm"], lambda: sr.lstm(5)),
    "gru": (["gru"], lambda: sr.gru(4)),
    "stack": (["lstm", "gru"], lambda: sr.stack([sr.lstm(5), sr.gru(4)])),
}


def _random_skip_params(cell, seed, dtype):
    params = cell.init(jax.random.key(seed), F)
    rng = np.random.default_rng(seed)
    # A gate that skips often but not always, and a non-zero learned s0.
    params["w_p"] = jnp.asarray(rng.normal(0, 2.0, params["w_p"].shape))
    params["b_p"] = jnp.asarray(-0.3)
    params = jax.tree.map(
        lambda p: p + 0.1 * rng.normal(size=p.shape) if p.ndim else p, params
    )
    return jax.tree.map(lambda p: jnp.asarray(p, dtype), params)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("wrapped", [True, False], ids=["skip", "plain"])
def test_unroll_matches_numpy_reference(name, wrapped):
    kinds, factory = MODELS[name]
    with jax.enable_x64(True):
        cell = sr.skip(factory())
        params = _random_skip_params(cell, seed=len(name), dtype=jnp.float64)
        if not wrapped:
            cell, params = factory(), params["cell"]
        xs = np.random.default_rng(0).normal(size=(B, T, F))
        lengths = np.array([T, 7, 1])
        final_state, out = sr.unroll(cell, params, jnp.asarray(xs), jnp.asarray(lengths))
        layer_params = reference.layers(params["cell"] if wrapped else params)
        for b in range(B):
            ref = reference.run_stack(
                kinds, layer_params, xs[b], skip_params=params if wrapped else None,
                length=lengths[b],
            )
            for field in ("h", "u", "u_tilde", "delta_u"):
                np.testing.assert_allclose(getattr(out, field)[b], ref[field], rtol=1e-10,
                                           atol=1e-12, err_msg=f"{field}, sequence {b}")
            final_h = cell.output(jax.tree.map(lambda s, b=b: s[b : b + 1], final_state))
            np.testing.assert_allclose(final_h[0], ref["h"][lengths[b] - 1], rtol=1e-10)
        if wrapped:  # the test must exercise both updates and skips
            assert 0 < float(out.u.sum()) < float(lengths.sum())


def test_a_stack_gate_reading_a_lower_layer_matches_numpy_reference():
    with jax.enable_x64(True):
        cell = sr.skip(sr.stack([sr.lstm(5), sr.gru(4)], gate_layers=(0,)))
        params = _random_skip_params(cell, seed=1, dtype=jnp.float64)
        assert params["w_p"].shape == (5,)  # the bottom LSTM's c
        xs = np.random.default_rng(1).normal(size=(B, T, F))
        _, out = sr.unroll(cell, params, jnp.asarray(xs))
        for b in range(B):
            ref = reference.run_stack(["lstm", "gru"], reference.layers(params["cell"]), xs[b],
                                      gate_layer=0, skip_params=params)
            for field in ("h", "u", "u_tilde", "delta_u"):
                np.testing.assert_allclose(getattr(out, field)[b], ref[field], rtol=1e-10,
                                           atol=1e-12, err_msg=f"{field}, sequence {b}")
        assert 0 < float(out.u.sum()) < B * T
