"""``sr.unroll(..., unroll=k)`` and ``models.apply(..., scan_unroll=k)``: a speed setting only."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import skip_rnn as sr
from configs.common import base_config
from skip_rnn.experiments import models

B, T, F, H = 3, 7, 2, 8  # T = 7: a multiple of neither 2 nor 4
XS = jax.random.normal(jax.random.key(1), (B, T, F))
LENGTHS = jnp.array([T, 5, 2])
CELL = sr.skip(sr.lstm(H))


@functools.cache
def _params():
    """Parameters of ``CELL`` that both update and skip: ``w_p`` standard normal, ``b_p = 0``."""
    params = jax.jit(CELL.init, static_argnums=1)(jax.random.key(0), F)
    w_p = np.random.default_rng(3).normal(size=H).astype(np.float32)
    return {**params, "w_p": jnp.asarray(w_p), "b_p": jnp.zeros(())}


@functools.partial(jax.jit, static_argnums=1)
def _loss_and_grads(params, unroll):
    """Task loss on the final state plus the budget loss (eq. 8), with ``sr.unroll``'s outputs
    and the gradients."""

    def loss(p):
        state, out = sr.unroll(CELL, p, XS, LENGTHS, unroll=unroll)
        return jnp.mean(jnp.square(CELL.output(state) - 1.0)) + sr.budget_loss(out.u, 1e-2), out

    return jax.value_and_grad(loss, has_aux=True)(params)


@pytest.mark.parametrize("unroll", [2, 4])
def test_unrolled_scan_gives_the_same_outputs_and_gradients(unroll):
    want = _loss_and_grads(_params(), 1)
    (_, out), _ = want
    assert 0 < out.u.sum() < int(LENGTHS.sum()) - B, "the model must both skip and update"
    got = _loss_and_grads(_params(), unroll)
    np.testing.assert_array_equal(got[0][1].u, out.u)  # the same steps update
    # Same values up to float rounding: XLA may sum the gradient in another order.
    for (path, g), w in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want),
                            strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-9, err_msg=jax.tree_util.keystr(path))


def _scan_unrolls(fn, *args) -> list:
    """The ``unroll`` parameter of every ``lax.scan`` in ``fn(*args)``'s jaxpr."""
    jaxpr = jax.make_jaxpr(fn)(*args).jaxpr
    return [eqn.params["unroll"] for eqn in jaxpr.eqns if eqn.primitive.name == "scan"]


def test_unroll_and_scan_unroll_reach_lax_scan():
    params = _params()
    assert _scan_unrolls(lambda p: sr.unroll(CELL, p, XS), params) == [1]
    assert _scan_unrolls(lambda p: sr.unroll(CELL, p, XS, LENGTHS, unroll=4), params) == [4]
    model = base_config("adding").model
    model.hidden_size = H
    cell = models.make_cell(model)
    model_params = models.init_params(jax.random.key(0), cell, F, num_outputs=1)
    apply = functools.partial(models.apply, cell, lengths=LENGTHS)
    assert _scan_unrolls(lambda p: apply(p, XS), model_params) == [1]
    assert _scan_unrolls(lambda p: apply(p, XS, scan_unroll=2), model_params) == [2]


def test_the_trainers_scan_unroll_defaults_per_backend():
    model = base_config("adding").model
    assert model.scan_unroll == 0 and models.scan_unroll(model) == 2  # this CPU
    model.scan_unroll = 3
    assert models.scan_unroll(model) == 3
