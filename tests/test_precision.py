"""Mixed precision: bfloat16 cells against the float64 reference, an update gate that stays
float32 (so the jumping runners skip exactly the steps ``sr.unroll`` skips), float32 gradients
of float32 parameters, and a bfloat16 run of the trainer."""

from __future__ import annotations

import functools
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import skip_rnn as sr
import skip_rnn.nnx
from skip_rnn.experiments import models, trainer
from skip_rnn.experiments.checkpoints import Checkpoints
from skip_rnn.experiments.configuration import ConfigError, check_config
from skip_rnn.linen import SkipGRUCell
from tests import reference
from tests.test_adapters import linen_stepwise
from tests.test_training import tiny_config

B, T, F, H = 3, 20, 3, 8
BF16, F32 = jnp.bfloat16, jnp.float32
XS = jax.random.normal(jax.random.key(1), (B, T, F))
# bfloat16 keeps 8 significant bits, a rounding of up to 2**-9 per operation; over T steps of a
# recurrence the outputs stay within 16 of those. float32 is 2**16 times finer.
BF16_TOLERANCE = 2.0**-5
MODELS = {  # name: (factory of the cell, layer kind of the reference)
    "lstm": (lambda **kw: sr.lstm(H, **kw), "lstm"),
    "gru": (lambda **kw: sr.gru(H, **kw), "gru"),
    "skip_lstm": (lambda **kw: sr.skip(sr.lstm(H, **kw)), "lstm"),
}


def _params(cell: sr.Cell):
    """``cell``'s initial parameters (float32); a skip cell's gate with ``W_p = 0`` and
    ``b_p = -0.85``: ``Δũ = σ(-0.85) ≈ 0.3`` at every update, so it updates every other step
    in any precision, and ``Δũ`` is a float32 value no bfloat16 value equals."""
    params = cell.init(jax.random.key(0), F)
    if "w_p" not in params:
        return params
    return {**params, "w_p": jnp.zeros_like(params["w_p"]), "b_p": jnp.asarray(-0.85, F32)}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_bfloat16_cells_are_within_bfloat16_rounding_of_the_float64_reference(name):
    make, kind = MODELS[name]
    cell = make(dtype=BF16)
    params = _params(cell)
    _, out = jax.jit(functools.partial(sr.unroll, cell))(params, XS)
    assert out.h.dtype == BF16
    assert out.u.dtype == out.u_tilde.dtype == out.delta_u.dtype == F32
    wrapped = "w_p" in params
    for b in range(B):
        ref = reference.run_stack([kind], [params["cell"] if wrapped else params],
                                  np.asarray(XS[b], np.float64),
                                  skip_params=reference.to_numpy(params) if wrapped else None)
        error = np.abs(np.asarray(out.h[b], np.float64) - ref["h"]).max()
        assert 1e-4 < error < BF16_TOLERANCE, error  # bfloat16 arithmetic, within its rounding
        np.testing.assert_array_equal(out.u[b], ref["u"])
        # The gate in float32: Δũ and ũ are not rounded to bfloat16's 8 bits.
        np.testing.assert_allclose(out.delta_u[b], ref["delta_u"], rtol=1e-6)
        np.testing.assert_allclose(out.u_tilde[b], ref["u_tilde"], rtol=1e-6)
    if wrapped:
        assert 0 < float(out.u.sum()) < out.u.size


JUMPING = {
    "lstm": sr.skip(sr.lstm(H, dtype=BF16)),
    "stack": sr.skip(sr.stack([sr.gru(H, dtype=BF16), sr.lstm(H, dtype=BF16)])),
}


@pytest.mark.parametrize("name", sorted(JUMPING))
def test_jumping_runners_skip_exactly_the_steps_unroll_skips_in_bfloat16(name):
    cell = JUMPING[name]
    params = cell.init(jax.random.key(2), F)
    params = {**params, "w_p": 3.0 * params["w_p"], "b_p": jnp.asarray(-0.5)}  # reads the state
    lengths = jnp.array([T, 11, 0])
    want_state, want = jax.jit(functools.partial(sr.unroll, cell))(params, XS, lengths)
    state, out, info = jax.jit(functools.partial(sr.jump_unroll, cell))(params, XS, lengths)
    u = np.asarray(want.u)
    assert 0 < u.sum() < int(lengths.sum()), "the model must both skip and update"
    np.testing.assert_array_equal(out.u, want.u)
    np.testing.assert_array_equal(info.num_updates, u.sum(axis=1))
    for field in ("u_tilde", "delta_u"):
        assert getattr(out, field).dtype == getattr(want, field).dtype == F32
        np.testing.assert_allclose(getattr(out, field), getattr(want, field), rtol=1e-6)
    assert out.h.dtype == want.h.dtype == BF16
    np.testing.assert_allclose(np.asarray(out.h, np.float32), np.asarray(want.h, np.float32),
                               rtol=2.0**-8)
    assert state.delta_u.dtype == want_state.delta_u.dtype == F32
    runner = sr.jump_stream(cell)  # sequence 0, one sample at a time
    push = jax.jit(runner.push)
    stream_state, t, read = runner.start(params), 0, []
    while t < T:
        read.append(t)
        stream_state, _, skips = push(params, stream_state, XS[:1, t])
        t += 1 + int(skips[0])
    np.testing.assert_array_equal(read, np.flatnonzero(u[0]))


@pytest.mark.parametrize("gradient", ["eq5", "paper"])
def test_gradients_of_float32_parameters_are_float32_finite_and_near_float32_ones(gradient):
    grads = {}
    for dtype in (None, BF16):
        cell = sr.skip(sr.lstm(H, dtype=dtype), gradient=gradient)

        def loss(params, cell=cell):
            out = sr.unroll(cell, params, XS)[1]
            return (jnp.mean(jnp.square(out.h.astype(F32) - 0.5))
                    + sr.budget_loss(out.u, 1e-2))

        grads[dtype] = jax.jit(jax.grad(loss))(_params(cell))
    for (path, got), want in zip(jax.tree_util.tree_leaves_with_path(grads[BF16]),
                                 jax.tree.leaves(grads[None]), strict=True):
        assert got.dtype == F32 and np.all(np.isfinite(got)), jax.tree_util.keystr(path)
        scale = float(np.abs(want).max())
        assert scale > 0, jax.tree_util.keystr(path)
        np.testing.assert_allclose(got, want, atol=BF16_TOLERANCE * scale,
                                   err_msg=jax.tree_util.keystr(path))


def _h_dtype(cell: sr.Cell, x_dtype) -> jnp.dtype:
    """The dtype of ``out.h`` of ``cell`` on inputs of ``x_dtype``, traced, not run."""
    params = jax.eval_shape(lambda key: cell.init(key, F), jax.random.key(0))
    return jax.eval_shape(lambda p: sr.unroll(cell, p, XS.astype(x_dtype))[1].h, params).dtype


def test_dtype_none_computes_as_inputs_and_parameters_promote():
    assert _h_dtype(sr.lstm(H), BF16) == F32  # float32 parameters
    assert _h_dtype(sr.gru(H, param_dtype=BF16), BF16) == BF16
    assert _h_dtype(sr.lstm(H, dtype=BF16), F32) == BF16  # dtype given: the inputs are cast
    params = sr.gru(H, param_dtype=BF16).init(jax.random.key(0), F)
    assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {jnp.dtype(BF16)}
    with pytest.raises(ValueError, match="dtype"):
        sr.lstm(H, dtype=jnp.int32)


def test_flops_per_update_counts_a_bfloat16_cell_as_a_float32_one():
    def make(**kw):
        return sr.skip(sr.stack([sr.lstm(H, **kw), sr.gru(H, **kw)]))

    want = (F + H) * 4 * H + (H + H) * 3 * H + H  # LSTM, GRU, the gate's W_p h (eq. 4)
    assert sr.flops_per_update(make(dtype=BF16), F) == sr.flops_per_update(make(), F) == want


def test_linen_and_nnx_cells_take_dtype_and_param_dtype():
    rnn = nn.RNN(SkipGRUCell(H, dtype=BF16, param_dtype=BF16))
    variables = rnn.init(jax.random.key(0), XS)
    params = variables["params"]["cell"]["cell"]
    assert {leaf.dtype for leaf in jax.tree.leaves(params["cell"])} == {jnp.dtype(BF16)}
    assert params["w_p"].dtype == params["b_p"].dtype == F32
    params = {**params, "w_p": 3.0 * params["w_p"], "b_p": jnp.asarray(-0.5, F32)}
    _, got = jax.jit(linen_stepwise(SkipGRUCell(H, dtype=BF16, param_dtype=BF16)))(
        {"params": {"cell": {"cell": params}}}, XS)
    _, want = jax.jit(functools.partial(sr.unroll, sr.skip(sr.gru(H, dtype=BF16))))(params, XS)
    assert 0 < float(want.u.sum()) < want.u.size
    for field in sr.Output._fields:
        assert getattr(got, field).dtype == getattr(want, field).dtype, field
        np.testing.assert_array_equal(getattr(got, field), getattr(want, field), err_msg=field)
    rngs = nnx.Rngs(0)
    layer = nnx.LSTMCell(F, H, dtype=BF16, param_dtype=BF16, rngs=rngs)
    carry, hs = nnx.RNN(skip_rnn.nnx.Skip(layer, rngs=rngs), return_carry=True)(XS)
    assert hs.dtype == BF16
    assert carry.u_tilde.dtype == carry.delta_u.dtype == carry.num_updates.dtype == F32


def test_adding_task_trains_in_bfloat16_with_float32_parameters_and_adam_state(tmp_path):
    config = tiny_config("adding")
    config.model.dtype = "bfloat16"
    config.model.hidden_size = 8
    config.batch_size = 32
    config.learning_rate = 1e-2
    config.num_train_steps = config.eval_every = config.checkpoint_every = 60
    config.num_figure_examples = 0
    cell = models.make_cell(config.model)
    assert _h_dtype(cell, F32) == BF16
    results = trainer.train_and_evaluate(config, str(tmp_path))
    assert results["config"]["model"]["dtype"] == "bfloat16"
    losses = [line["task_loss"] for line in map(json.loads, open(tmp_path / "metrics.jsonl"))
              if line["split"] == "train"]
    assert len(losses) == 60 and np.all(np.isfinite(losses))
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10]), losses
    checkpoints = Checkpoints(str(tmp_path))
    restored = checkpoints.latest.restore(checkpoints.latest.latest_step())
    checkpoints.close()
    floats = [leaf for leaf in jax.tree.leaves(restored["tree"]["state"])
              if jnp.issubdtype(leaf.dtype, jnp.floating)]
    assert len(floats) == 3 * len(jax.tree.leaves(restored["tree"]["state"]["params"]))
    assert {leaf.dtype for leaf in floats} == {np.dtype(np.float32)}  # parameters, Adam's μ, ν
    config.model.dtype = "float16"
    with pytest.raises(ConfigError, match="model.dtype"):
        check_config(config, 1)
