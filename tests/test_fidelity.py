"""Fidelity to the paper: its equations as printed (``gradient="paper"``), the authors' code
(``gradient="reference_code"``, their GRU), and the published FLOP counts."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import skip_rnn as sr
from skip_rnn._src.skip import GRADIENTS
from tests import reference

B, T, F = 3, 8, 2
MODELS = {  # name: (layer kinds, factory)
    "lstm": (["lstm"], lambda: sr.lstm(5)),
    "gru": (["gru"], lambda: sr.gru(4)),
    "stack": (["lstm", "gru_tf"],  # the authors' GRU (TF's) on top: the gate reads it
              lambda: sr.stack([sr.lstm(5), sr.gru(4, reset_after=False, gate_bias=1.0)])),
}


@pytest.mark.parametrize("gradient, expected",
                         [("paper", "s*ds"), ("eq5", "s*ds"), ("reference_code", "(1-s)*ds")])
def test_minimal_case_gradient_of_third_gate(gradient, expected):
    """Skip LSTM, B=1, T=3, W_p=0, b_p=1: u = (1, 1, 1); ∂u_3/∂b_p is s·s' (eq. 5) or (1-s)·s'.
    (With W_p = 0, Δũ does not read the state, so the paper's form and eq5 agree here.)"""
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
    """Each form's gradients (every parameter and the inputs) equal a float64 transcription of
    its recurrence: ``"paper"`` eqs. 2-5 as printed, the others Fig. 1's placement of ``Δũ``.
    The forward values of the three forms are identical, their gradients are not."""
    kinds, factory = MODELS[name]
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        xs = jnp.asarray(rng.normal(size=(B, T, F)))
        w_h, w_u = (jnp.asarray(rng.normal(size=s)) for s in ((B, T, 4), (B, T)))
        params = _skipping_params(sr.skip(factory()), seed=len(name))
        grads, outputs = {}, {}
        for gradient in GRADIENTS:
            cell = sr.skip(factory(), gradient=gradient)

            def loss(p, xs, cell=cell):
                out = sr.unroll(cell, p, xs)[1]
                return jnp.sum(out.h[..., :4] * w_h) + jnp.sum(out.u * w_u)

            def reference_loss(p, xs, gradient=gradient):
                layers = reference.layers(p["cell"])
                if gradient == "paper":
                    h, u = reference.paper_gradient_reference(kinds, layers, p, xs)
                else:
                    h, u = reference.skip_gradient_reference(kinds, layers, p, xs, gradient)
                return jnp.sum(h[..., :4] * w_h) + jnp.sum(u * w_u)

            outputs[gradient] = sr.unroll(cell, params, xs)[1]
            grads[gradient] = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, xs)
            want = jax.grad(reference_loss, argnums=(0, 1))(params, xs)
            for (path, g), w in zip(jax.tree_util.tree_leaves_with_path(grads[gradient]),
                                    jax.tree.leaves(want), strict=True):
                np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12,
                                           err_msg=f"{gradient} {jax.tree_util.keystr(path)}")
        u = np.asarray(outputs["paper"].u)
        assert 0 < u.sum() < u.size, "the model must both skip and update"
        for other in ("eq5", "reference_code"):
            for a, b in zip(jax.tree.leaves(outputs["paper"]), jax.tree.leaves(outputs[other]),
                            strict=True):
                np.testing.assert_array_equal(a, b, err_msg=other)
        b_p = {gradient: float(g[0]["b_p"]) for gradient, g in grads.items()}
        for a, b in itertools.combinations(GRADIENTS, 2):
            assert not np.isclose(b_p[a], b_p[b], rtol=1e-6), b_p  # each exact to 1e-9


def test_authors_gru_is_tensorflows_gru_cell():
    """``gru(reset_after=False, gate_bias=1.0)`` against a transcription of TF 1.x's
    ``GRUCell`` on ``[x, h]`` kernels: forward values, and gradients of every parameter and the
    inputs. (Inside ``skip``: the stack of :func:`test_gradients_equal_literal_transcriptions`.)"""
    H = 4
    cell = sr.gru(H, reset_after=False, gate_bias=1.0)
    with jax.enable_x64(True):
        params = _skipping_params(sr.skip(cell), seed=2)["cell"]
        xs = jnp.asarray(np.random.default_rng(2).normal(size=(B, T, F)))
        h = sr.unroll(cell, params, xs)[1].h
        for b in range(B):
            want = reference.run_stack(["gru_tf"], [params], np.asarray(xs[b]))["h"]
            np.testing.assert_allclose(h[b], want, rtol=1e-12, atol=1e-14)

        def loss(p, xs):
            return jnp.sum(jnp.sin(sr.unroll(cell, p, xs)[1].h))

        def reference_loss(p, xs):
            h, total = jnp.broadcast_to(p["s0"], (B, H)), 0.0
            for t in range(T):
                h = reference.gru_tf_step(p, h, xs[:, t], xp=jnp)
                total = total + jnp.sum(jnp.sin(h))
            return total

        got = jax.grad(loss, argnums=(0, 1))(params, xs)
        want = jax.grad(reference_loss, argnums=(0, 1))(params, xs)
        for (path, g), w in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want),
                                strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12,
                                       err_msg=jax.tree_util.keystr(path))
    fresh = cell.init(jax.random.key(0), F)
    assert sorted(fresh) == ["b", "s0", "w_h", "w_x"]  # no b_hn
    np.testing.assert_array_equal(fresh["b"], [1.0] * 2 * H + [0.0] * H)  # r, z start at 1
    np.testing.assert_array_equal(sr.gru(H).init(jax.random.key(0), F)["b"], 0.0)


def test_unknown_gradient_form_is_refused():
    with pytest.raises(ValueError, match="gradient"):
        sr.skip(sr.gru(2), gradient="eq6")


def test_linen_cell_takes_the_gradient_form():
    from skip_rnn.linen import SkipGRUCell
    from tests.test_adapters import linen_stepwise

    xs = jax.random.normal(jax.random.key(0), (2, 6, F))
    run = linen_stepwise(SkipGRUCell(4, gradient="reference_code"))
    params = _skipping_params(sr.skip(sr.gru(4)), seed=3)
    pure = sr.skip(sr.gru(4), gradient="reference_code")

    def linen_loss(p):
        return jnp.sum(run({"params": {"cell": {"cell": p}}}, xs)[1].u ** 2)

    def pure_loss(p):
        return jnp.sum(sr.unroll(pure, p, xs)[1].u ** 2)

    got, want = jax.grad(linen_loss)(params), jax.grad(pure_loss)(params)
    np.testing.assert_allclose(got["b_p"], want["b_p"], rtol=1e-6)
    assert float(want["b_p"]) != 0.0


@pytest.mark.parametrize(
    "cell, input_size, steps, paper",
    [(sr.lstm(110), 2, 50, 2.46e6), (sr.gru(110), 2, 50, 1.85e6),
     (sr.lstm(110), 1, 784, 3.83e7), (sr.gru(110), 1, 784, 2.87e7)],
    ids=["adding-lstm", "adding-gru", "mnist-lstm", "mnist-gru"],
)
def test_flops_per_update_matches_the_papers_rows(cell, input_size, steps, paper):
    flops = sr.flops_per_update(cell, input_size) * steps
    assert float(f"{flops:.2e}") == paper


def test_flops_of_skip_cells_and_stacks():
    # (F + H)·G·H per layer; the gate adds W_p's D = H (Skip LSTM λ=1e-5, adding: 1.33e6 at 53.9%).
    assert sr.flops_per_update(sr.skip(sr.lstm(110)), 2) == (2 + 110) * 4 * 110 + 110
    assert float(f"{0.539 * 50 * sr.flops_per_update(sr.skip(sr.lstm(110)), 2):.2e}") == 1.33e6
    stack = sr.stack([sr.lstm(512), sr.gru(256)])
    assert sr.flops_per_update(stack, 2048) == (2048 + 512) * 4 * 512 + (512 + 256) * 3 * 256


def test_flops_of_a_skip_conv_lstm_count_every_output_position():
    import flax.linen as nn

    cell = sr.skip(sr.from_linen(nn.ConvLSTMCell(16, (3, 3)), spatial_shape=(8, 8)))
    # Two 3x3 'SAME' convolutions to the 4·16 = 64 gate channels at each of 8·8 = 64 positions:
    # input 3·3·2·64 = 1,152 and hidden 3·3·16·64 = 9,216 per position, (1,152 + 9,216)·64 =
    # 663,552; the gate's W_p reads c, 8·8·16 = 1,024 values. Total 664,576.
    assert sr.flops_per_update(cell, 2) == 664_576


def test_flops_look_inside_calls_and_refuse_control_flow():
    lstm = sr.lstm(4)
    remat = lstm._replace(step=jax.checkpoint(lstm.step))
    assert sr.flops_per_update(remat, 2) == (2 + 4) * 4 * 4
    branched = lstm._replace(step=lambda p, s, x, key=None: jax.lax.cond(
        True, lambda: lstm.step(p, s, x), lambda: lstm.step(p, s, x)))
    with pytest.raises(ValueError, match="cond"):
        sr.flops_per_update(branched, 2)


def test_random_skip_draws_every_step_and_copies_skipped_states():
    cell = sr.random_skip(sr.gru(4), p_skip=0.5)
    params = cell.init(jax.random.key(0), F)
    xs = jax.random.normal(jax.random.key(1), (256, 12, F))
    run = jax.jit(lambda p, k: sr.unroll(cell, p, xs, key=k))
    _, out = run(params, jax.random.key(2))
    u = np.asarray(out.u)
    assert set(np.unique(u)) == {0.0, 1.0}
    assert abs(u[:, 0].mean() - 0.5) < 0.1, "the first step is not forced"
    assert abs(u.mean() - 0.5) < 0.03
    # a fresh draw at every step: u_t differs from u_{t-1} half the time (2·p·(1 - p))
    assert abs(np.mean(u[:, 1:] != u[:, :-1]) - 0.5) < 0.03
    h = np.asarray(out.h)
    skipped = np.nonzero(u[:, 1:] == 0)
    np.testing.assert_array_equal(h[:, 1:][skipped], h[:, :-1][skipped])  # exact copies
    updated = np.nonzero(u[:, 1:] == 1)
    assert np.all(np.any(h[:, 1:][updated] != h[:, :-1][updated], axis=-1))
    assert not np.array_equal(u, run(params, jax.random.key(3))[1].u)
    grads = jax.grad(lambda p: jnp.sum(sr.unroll(cell, p, xs, key=jax.random.key(2))[1].h))(
        params)
    assert all(np.all(np.isfinite(g)) and np.any(g != 0) for g in jax.tree.leaves(grads))


def test_random_skip_refuses_bad_input():
    with pytest.raises(ValueError, match="p_skip"):
        sr.random_skip(sr.lstm(2), 1.0)
    cell = sr.random_skip(sr.lstm(2), 0.5)
    with pytest.raises(ValueError, match="pass `key`"):
        sr.unroll(cell, cell.init(jax.random.key(0), 1), jnp.ones((1, 3, 1)))
    with pytest.raises(ValueError, match="random_skip: `cell` is a skip cell"):
        sr.random_skip(sr.skip(sr.lstm(2)), 0.5)


def test_random_skip_passes_a_key_to_a_cell_that_draws():
    """A stack with a layer that draws, under random_skip: that layer gets its own key."""
    inner = sr.stack([sr.skip(sr.gru(3), binarize="bernoulli")])
    cell = sr.random_skip(inner, 0.5)
    params = cell.init(jax.random.key(0), 1)
    state, x, key = cell.initial_state(params, 4), jnp.ones((4, 1)), jax.random.key(5)
    new_state, out = cell.step(params, state, x, key)
    candidate, _ = inner.step(params, state, x, jax.random.fold_in(key, 1))
    for b in range(4):
        want = candidate if out.u[b] else state
        jax.tree.map(lambda n, w, b=b: np.testing.assert_array_equal(n[b], w[b]), new_state, want)


def test_padding_fed_and_counted_the_papers_way_with_flops_and_seeded_embeddings(imdb_csv,
                                                                                 tmp_path):
    from skip_rnn.experiments import data, population, trainer
    from tests.test_training import tiny_config

    config = tiny_config("imdb", dir=imdb_csv, mask_padding=False)
    config.model.cell, config.num_seeds = "lstm", 2
    results = trainer.train_and_evaluate(config, str(tmp_path))
    per_update = sr.flops_per_update(sr.lstm(4), 6)
    for member in results["members"]:  # the LSTM reads every step, padding included
        test = member["best"]["test"]
        assert test["updates_mean"] == 12 and test["updates_percent"] == 100.0
        assert test["inference_flops"] == 12 * per_update
    task = data.load(config)
    assert task.train_batch(0, 0).lengths is None
    assert task.eval_sets["test"].slice(0, 3).lengths is None
    params = population.init_population(sr.lstm(4), task, population.population(config))
    assert not np.array_equal(params["embedding"][0], params["embedding"][1])


def test_random_skip_member_and_the_reference_code_switch(tmp_path):
    from skip_rnn.experiments import configuration, losses, models, trainer
    from tests.test_training import tiny_config

    config = tiny_config("adding")
    config.model.cell, config.model.p_skip, config.reference_code = "gru", 0.5, True
    config.data.num_eval = 200
    results = trainer.train_and_evaluate(config, str(tmp_path))
    assert results["config"]["model"]["gradient"] == "reference_code"
    assert results["config"]["model"]["init"] == "reference_code"
    assert results["config"]["regression_loss"] == "half_mse"
    resolved = configuration.resolve(config).model  # the authors' GRU: TF 1.x's, r, z at 1
    assert (resolved.gru_reset_after, resolved.gru_gate_bias) == (False, 1.0)
    gru_params = models.make_cell(resolved).init(jax.random.key(0), 2)
    assert "b_hn" not in gru_params and np.all(np.asarray(gru_params["b"][:8]) == 1.0)
    test = results["members"][0]["best"]["test"]
    assert 40 < test["updates_percent"] < 60
    assert test["inference_flops"] == pytest.approx(
        test["updates_mean"] * sr.flops_per_update(sr.gru(4), 2))
    per_example = losses.per_example_metrics(jnp.array([[1.0], [0.0]]), jnp.array([0.0, 2.0]),
                                             True, "half_mse")
    np.testing.assert_array_equal(per_example["loss"], [0.5, 2.0])
    np.testing.assert_array_equal(per_example["metric"], [1.0, 4.0])


def test_reference_code_init_draws_glorot_over_x_and_h():
    from skip_rnn.experiments import models

    cell = sr.skip(sr.stack([sr.lstm(64), sr.gru(32)]))
    params = models.reference_code_init(jax.random.key(0), cell.init(jax.random.key(1), 16))
    first, second = params["cell"]["layers_0"], params["cell"]["layers_1"]
    # The LSTM's one kernel [x; h] -> 4H; the GRU's two: gates -> 2H, candidate -> H.
    for block, (fan_in, fan_out) in ((np.concatenate([first["w_x"], first["w_h"]]), (80, 256)),
                                     (np.concatenate([second["w_x"], second["w_h"]])[:, :64],
                                      (96, 64)),
                                     (np.concatenate([second["w_x"], second["w_h"]])[:, 64:],
                                      (96, 32))):
        limit = np.sqrt(6 / (fan_in + fan_out))
        assert block.shape == (fan_in, fan_out)
        assert np.abs(block).max() <= limit and np.abs(block).max() > 0.95 * limit
        assert abs(block.std() - limit / np.sqrt(3)) < 0.05 * limit  # uniform(-l, l)
    s0 = np.concatenate([first["s0"]["c"], first["s0"]["h"], second["s0"]])
    assert abs(s0.mean()) < 0.3 and abs(s0.std() - 1) < 0.2  # N(0, 1)
    assert np.abs(params["w_p"]).max() <= np.sqrt(6 / (32 + 1))
    initial = cell.init(jax.random.key(1), 16)["cell"]["layers_0"]
    np.testing.assert_array_equal(first["b"], initial["b"])
    readout = models.init_params(jax.random.key(2), cell, 16, 1, init="reference_code")
    limit = np.sqrt(6 / (32 + 1))  # Glorot-uniform readout, the authors' fully_connected
    w = np.asarray(readout["readout"]["w"])
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.7 * limit


def test_eval_every_zero_means_once_per_epoch():
    from skip_rnn.experiments import steps
    from skip_rnn.experiments.data import TaskData
    from tests.test_training import tiny_config

    config = tiny_config("mnist")
    config.eval_every = 0
    task = TaskData(None, {}, 1, 10, steps_per_epoch=214)
    assert steps.eval_every(config, task) == 214
    with pytest.raises(ValueError, match="eval_every must be > 0 for the synthetic task"):
        steps.eval_every(config, task._replace(steps_per_epoch=None))
