"""Fidelity to the paper as published: the authors' gradient form, ``gradient="reference_code"``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import skip_rnn as sr
from tests import reference

B, T, F = 3, 8, 2
MODELS = {  # name: (layer kinds, factory)
    "lstm": (["lstm"], lambda: sr.lstm(5)),
    "gru": (["gru"], lambda: sr.gru(4)),
    "stack": (["lstm", "gru"], lambda: sr.stack([sr.lstm(5), sr.gru(4)])),
}


@pytest.mark.parametrize("gradient, expected", [("eq5", "s*ds"), ("reference_code", "(1-s)*ds")])
def test_minimal_case_gradient_of_third_gate(gradient, expected):
    """Skip LSTM, B=1, T=3, W_p=0, b_p=1: u = (1, 1, 1); ∂u_3/∂b_p is s·s' (eq. 5) or (1-s)·s'."""
    cell = sr.skip(sr.lstm(4), gradient=gradient)
    params = cell.init(jax.random.key(0), 1)
    params = {**params, "w_p": jnp.zeros_like(params["w_p"])}

    def third_gate(b_p):
        return sr.unroll(cell, {**params, "b_p": b_p}, jnp.ones((1, 3, 1)))[1].u[0, 2]

    s = 1.0 / (1.0 + np.exp(-1.0))
    ds = s * (1 - s)
    want = {"s*ds": s * ds, "(1-s)*ds": (1 - s) * ds}[expected]
    np.testing.assert_array_equal(sr.unroll(cell, params, jnp.ones((1, 3, 1)))[1].u, 1.0)
    np.testing.assert_allclose(jax.grad(third_gate)(1.0), want, rtol=1e-6)


def _skipping_params(cell, seed):
    params = cell.init(jax.random.key(seed), F)
    rng = np.random.default_rng(seed)
    params = jax.tree.map(lambda p: p + 0.1 * rng.normal(size=p.shape), params)
    return {**params, "w_p": jnp.asarray(rng.normal(0, 2.0, params["w_p"].shape)),
            "b_p": jnp.asarray(-1.0)}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_gradients_equal_literal_transcriptions(name):
    """Both forms' gradients (every parameter) equal a float64 transcription of their recurrence;
    the forward values of the two forms are identical, their gradients are not."""
    kinds, factory = MODELS[name]
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        xs = jnp.asarray(rng.normal(size=(B, T, F)))
        w_h, w_u = (jnp.asarray(rng.normal(size=s)) for s in ((B, T, 4), (B, T)))
        params = _skipping_params(sr.skip(factory()), seed=len(name))
        grads, outputs = {}, {}
        for gradient in ("eq5", "reference_code"):
            cell = sr.skip(factory(), gradient=gradient)

            def loss(p, cell=cell):
                out = sr.unroll(cell, p, xs)[1]
                return jnp.sum(out.h[..., :4] * w_h) + jnp.sum(out.u * w_u), out

            def reference_loss(p, gradient=gradient):
                layers = p["cell"] if name == "stack" else [p["cell"]]
                h, u = reference.skip_gradient_reference(kinds, layers, p, xs, gradient)
                return jnp.sum(h[..., :4] * w_h) + jnp.sum(u * w_u)

            grads[gradient], outputs[gradient] = jax.jit(jax.grad(loss, has_aux=True))(params)
            want = jax.jit(jax.grad(reference_loss))(params)
            for (path, g), w in zip(jax.tree_util.tree_leaves_with_path(grads[gradient]),
                                    jax.tree.leaves(want), strict=True):
                np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12,
                                           err_msg=f"{gradient} {jax.tree_util.keystr(path)}")
        u = np.asarray(outputs["eq5"].u)
        assert 0 < u.sum() < u.size, "the model must both skip and update"
        for a, b in zip(jax.tree.leaves(outputs["eq5"]), jax.tree.leaves(outputs["reference_code"]),
                        strict=True):
            np.testing.assert_array_equal(a, b)
        assert not np.allclose(grads["eq5"]["b_p"], grads["reference_code"]["b_p"], rtol=1e-3)


def test_unknown_gradient_form_is_refused():
    with pytest.raises(ValueError, match="gradient"):
        sr.skip(sr.gru(2), gradient="eq6")


def test_linen_cell_takes_the_gradient_form():
    import flax.linen as nn

    from skip_rnn.linen import SkipGRUCell

    xs = jax.random.normal(jax.random.key(0), (2, 6, F))
    rnn = nn.RNN(SkipGRUCell(4, gradient="reference_code"))
    params = _skipping_params(sr.skip(sr.gru(4)), seed=3)
    pure = sr.skip(sr.gru(4), gradient="reference_code")

    def linen_loss(p):
        return jnp.sum(rnn.apply({"params": {"cell": {"cell": p}}}, xs).u ** 2)

    def pure_loss(p):
        return jnp.sum(sr.unroll(pure, p, xs)[1].u ** 2)

    got, want = jax.grad(linen_loss)(params), jax.grad(pure_loss)(params)
    np.testing.assert_allclose(got["b_p"], want["b_p"], rtol=1e-6)
    assert float(want["b_p"]) != 0.0
