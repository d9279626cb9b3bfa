"""The library where research code composes it: exported functions, parameters restored
without a target, each against the same computation without the feature."""

from __future__ import annotations

import os
import subprocess
import sys

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

import skip_rnn as sr

B, T, F = 2, 6, 3
CELLS = {
    "lstm": lambda: sr.lstm(4),
    "gru": lambda: sr.gru(4),
    "skip_lstm": lambda: sr.skip(sr.lstm(4)),
    "skip_gru": lambda: sr.skip(sr.gru(4)),
    "skip_stack": lambda: sr.skip(sr.stack([sr.lstm(4), sr.gru(3)])),
}


def _inputs():
    return jax.random.normal(jax.random.key(1), (B, T, F))


def _skipping(params):
    """Parameters of a skip cell whose gate skips some steps."""
    return {**params, "b_p": jnp.asarray(-0.5)} if "b_p" in params else params


def _same(tree, expected):
    assert jax.tree.structure(tree) == jax.tree.structure(expected)
    jax.tree.map(np.testing.assert_array_equal, tree, expected)


@pytest.mark.parametrize("name", CELLS)
def test_parameters_restored_without_a_target_run_as_the_originals(name, tmp_path):
    cell = CELLS[name]()
    params = _skipping(cell.init(jax.random.key(0), F))
    assert all(type(node) is dict for node in _containers(params))  # plain dicts only
    expected = sr.unroll(cell, params, _inputs())
    from_msgpack = flax.serialization.msgpack_restore(flax.serialization.msgpack_serialize(
        jax.device_get(params)))
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(tmp_path / "params", params)
    with ocp.StandardCheckpointer() as checkpointer:
        from_orbax = checkpointer.restore(tmp_path / "params")
    for restored in (from_msgpack, from_orbax):
        _same(sr.unroll(cell, restored, _inputs()), expected)


def _containers(tree):
    """Every inner node of a parameter tree."""
    if isinstance(tree, dict | list | tuple):
        yield tree
        for child in tree.values() if isinstance(tree, dict) else tree:
            yield from _containers(child)


def _roundtrip(function, *args):
    """``function`` exported, serialized, deserialized and called on ``args``, beside the
    jitted ``function``'s own result."""
    exported = jax.export.export(jax.jit(function))(*args)
    restored = jax.export.deserialize(exported.serialize())
    return restored.call(*args), jax.jit(function)(*args)


def test_exported_unroll_jump_unroll_and_push_serialize_and_give_the_same_outputs():
    cell = CELLS["skip_stack"]()
    params = _skipping(cell.init(jax.random.key(0), F))
    xs, lengths = _inputs(), jnp.array([T, 4])
    got, want = _roundtrip(lambda p, x, n: sr.unroll(cell, p, x, n), params, xs, lengths)
    assert isinstance(got[0], sr.SkipState) and isinstance(got[1], sr.Output)
    _same(got, want)
    got, want = _roundtrip(lambda p, x: sr.jump_unroll(cell, p, x), params, xs)
    assert isinstance(got[2], sr.JumpInfo)
    _same(got, want)
    runner = sr.jump_stream(cell)
    state = runner.start(params, B)
    got, want = _roundtrip(runner.push, params, state, xs[:, 0])
    assert isinstance(got[0].cell[0], sr.LSTMState)
    _same(got, want)


SHARDED = r'''
import flax.linen as nn
import jax, jax.numpy as jnp, numpy as np, optax
from flax import nnx
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
import skip_rnn as sr
from skip_rnn.linen import SkipLSTMCell
from skip_rnn.nnx import Skip

cell = sr.skip(sr.stack([sr.lstm(8), sr.gru(6)]))
params = {**cell.init(jax.random.key(0), 3), "b_p": jnp.asarray(-0.5)}
xs = jax.random.normal(jax.random.key(1), (8, 7, 3))
lengths = jnp.array([7, 5, 1, 0, 7, 3, 6, 2])
tx = optax.adam(1e-2)
linen_rnn = nn.RNN(SkipLSTMCell(8))
linen_vars = linen_rnn.init(jax.random.key(2), xs)
nnx_rnn = nnx.RNN(Skip(nnx.LSTMCell(3, 8, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(0)))

def loss(p, x, n):
    state, out = sr.unroll(cell, p, x, n)
    return jnp.mean(cell.output(state) ** 2) + sr.budget_loss(out.u, 1e-2)

@jax.jit
def train_step(p, opt_state, x, n):
    value, grads = jax.value_and_grad(loss)(p, x, n)
    updates, opt_state = tx.update(grads, opt_state, p)
    return optax.apply_updates(p, updates), value, grads

runner = sr.jump_stream(cell)
linen_carry = SkipLSTMCell(8).initialize_carry(jax.random.key(0), (8, 3))
nnx_carry = nnx_rnn.cell.initialize_carry((8, 3), nnx.Rngs(0))

def like_rows(carry, x):
    """On an explicit mesh, Flax's RNNs need the initial carry sharded as the inputs are."""
    spec = jax.typeof(x).sharding.spec[0]
    return carry if spec is None else jax.tree.map(
        lambda a: jax.sharding.reshard(a, P(spec)), carry)

computations = {
    "unroll": jax.jit(lambda p, x, n: sr.unroll(cell, p, x, n)),
    "train_step": lambda p, x, n: train_step(p, tx.init(p), x, n),
    "jump_unroll": jax.jit(lambda p, x, n: sr.jump_unroll(cell, p, x, n)),
    "push": lambda p, x, n: jax.jit(runner.push)(p, runner.start(p, x.shape[0]), x[:, 0]),
    "linen": jax.jit(lambda p, x, n: linen_rnn.apply(linen_vars, x, seq_lengths=n,
                                                     initial_carry=like_rows(linen_carry, x))),
    "nnx": lambda p, x, n: nnx_rnn(x, initial_carry=like_rows(nnx_carry, x)),
}
expected = {name: f(params, xs, lengths) for name, f in computations.items()}
for kind in (AxisType.Explicit, AxisType.Auto):
    mesh = jax.make_mesh((4,), ("batch",), axis_types=(kind,))
    with jax.set_mesh(mesh):
        rows = NamedSharding(mesh, P("batch"))
        x, n = jax.device_put(xs, rows), jax.device_put(lengths, rows)
        for name, f in computations.items():
            got = f(params, x, n)
            jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                         got, expected[name])
            print(kind, name, "equal")
'''


def test_every_entry_point_runs_on_explicit_and_auto_meshes_as_unsharded():
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    run = subprocess.run([sys.executable, "-c", SHARDED], env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("equal") == 12


@pytest.mark.parametrize("name", ["gru", "skip_lstm"])
def test_reverse_reads_each_sequences_valid_steps_last_to_first(name):
    cell = CELLS[name]()
    params = _skipping(cell.init(jax.random.key(0), F))
    xs, lengths = _inputs(), jnp.array([T, 4])
    final_state, out = sr.unroll(cell, params, xs, lengths, reverse=True)
    for b, length in enumerate(np.asarray(lengths)):  # each row alone, reversed by hand
        row_state, row_out = sr.unroll(cell, params, xs[b : b + 1, :length][:, ::-1])
        jax.tree.map(lambda got, want, b=b: np.testing.assert_allclose(got[b], want[0],
                                                                       rtol=1e-6),
                     final_state, row_state)
        for got, want in zip(out, row_out, strict=True):
            np.testing.assert_allclose(got[b, :length], want[0, ::-1], rtol=1e-6)
        np.testing.assert_array_equal(out.u[b, length:], 0)  # padding stays at the end
    # gradients too: the reversed run's, row by row, equal the hand-reversed row's
    def loss(p, xs, lengths, reverse, length):  # the valid steps' outputs only
        state, out = sr.unroll(cell, p, xs, lengths, reverse=reverse)
        return (jnp.sum(cell.output(state) ** 2) + jnp.sum(out.h[:, :length] ** 2)
                + jnp.sum(out.u[:, :length]))

    for b, length in enumerate(np.asarray(lengths)):
        got = jax.grad(loss)(params, xs[b : b + 1], lengths[b : b + 1], True, length)
        want = jax.grad(loss)(params, xs[b : b + 1, :length][:, ::-1], None, False, length)
        jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7),
                     got, want)


def test_remat_gives_the_same_values_and_gradients():
    cell = CELLS["skip_lstm"]()
    params = _skipping(cell.init(jax.random.key(0), F))

    def loss(p, remat):
        state, out = sr.unroll(cell, p, _inputs(), jnp.array([T, 4]), remat=remat)
        return jnp.sum(cell.output(state) ** 2) + sr.budget_loss(out.u, 1e-2)

    value, grads = jax.value_and_grad(loss)(params, False)
    value_remat, grads_remat = jax.value_and_grad(loss)(params, True)
    np.testing.assert_allclose(value_remat, value, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                 grads_remat, grads)
    # and it does recompute: the backward pass keeps fewer temporaries over 200 steps
    xs = jnp.ones((8, 200, F))

    def temporaries(remat: bool) -> int:
        grad = jax.grad(lambda p: jnp.sum(sr.unroll(cell, p, xs, remat=remat)[1].h))
        return jax.jit(grad).lower(params).compile().memory_analysis().temp_size_in_bytes

    assert temporaries(True) < 0.7 * temporaries(False)


def _jumping_case():
    cell = CELLS["skip_lstm"]()
    params = {**cell.init(jax.random.key(0), F), "b_p": jnp.asarray(-1.0)}
    xs = jax.random.normal(jax.random.key(1), (3, 12, F))
    return cell, params, xs, jnp.array([12, 7, 0])


def _equal_runs(got, want):
    """``(final_state, out)`` of two runs, equal to float rounding; the gates exactly."""
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), got, want)
    np.testing.assert_array_equal(got[1].u, want[1].u)


@pytest.mark.parametrize("chunk", [1, 3, 8])
def test_jumping_in_chunks_and_continued_equals_unroll(chunk):
    cell, params, xs, lengths = _jumping_case()
    want = sr.unroll(cell, params, xs, lengths)
    state, out, info = sr.jump_unroll(cell, params, xs, lengths, chunk=chunk)
    _equal_runs((state, out), want)
    assert 0 < int(info.num_updates.sum()) < int(lengths.sum())  # it skips
    assert int(info.num_iterations) == int(info.num_updates.max())
    for k in (1, 5, 12):  # xs[:, :k], then the rest from where it stopped
        first, second = np.minimum(lengths, k), np.maximum(lengths - k, 0)
        state, head, _ = sr.jump_unroll(cell, params, xs[:, :k], first, chunk=chunk)
        state, tail, _ = sr.jump_unroll(cell, params, xs[:, k:], second, state,
                                                chunk=chunk)
        _equal_runs((state, jax.tree.map(lambda a, b: jnp.concatenate([a, b], 1), head, tail)),
                    want)


def test_narrow_integer_lengths_of_long_sequences_mean_what_they_say():
    """uint8 lengths with T = 300, past what uint8 holds: the padding masked at each length."""
    cell = sr.skip(sr.gru(3))
    params = cell.init(jax.random.key(0), 1)
    xs = jnp.ones((2, 300, 1))
    lengths = np.array([5, 250], np.uint8)
    _, out = sr.unroll(cell, params, xs, lengths)
    assert out.u.sum(axis=1).tolist() == [5.0, 250.0]  # b_p = 1: every valid step updates
    _, jumped, _ = sr.jump_unroll(cell, params, xs, lengths)
    assert jumped.u.sum(axis=1).tolist() == [5.0, 250.0]
    np.testing.assert_array_equal(sr.zero_padding(xs, lengths).sum(axis=(1, 2)), [5, 250])


def test_jumping_takes_numpy_any_integer_lengths_x64_and_vmap():
    cell, params, xs, lengths = _jumping_case()
    want = sr.unroll(cell, params, xs, lengths)
    for dtype in (np.int16, np.uint8, np.int64):
        got = sr.jump_unroll(cell, jax.device_get(params), np.asarray(xs),
                             np.asarray(lengths, dtype))
        _equal_runs(got[:2], want)
    with jax.enable_x64(True):
        got = jax.jit(lambda p, x, n: sr.jump_unroll(cell, p, x, n))(
            params, xs, jnp.asarray(lengths, jnp.int64))
        _equal_runs(got[:2], want)
    population = jax.tree.map(lambda a: jnp.stack([a, a * 0.5]), params)  # 2 members
    states, outs, infos = jax.vmap(lambda p: sr.jump_unroll(cell, p, xs, lengths))(population)
    for m in range(2):
        member = jax.tree.map(lambda a, m=m: a[m], population)
        _equal_runs(jax.tree.map(lambda a, m=m: a[m], (states, outs)),
                    sr.unroll(cell, member, xs, lengths))
    with pytest.raises(ValueError, match=r"jump_unroll: `xs` must be \[batch, time, features\]"):
        sr.jump_unroll(cell, params, xs[:, 0])


def test_skip_cells_refuse_several_batch_axes_in_one_line():
    import flax.linen as nn
    from flax import nnx

    import skip_rnn.nnx
    from skip_rnn.linen import Skip

    xs = jnp.ones((2, 3, T, F))  # two batch axes
    with pytest.raises(ValueError, match=r"Skip: inputs must have one batch axis.*\(2, 3, 3\)"):
        nn.RNN(Skip(nn.GRUCell(4))).init(jax.random.key(0), xs)
    rngs = nnx.Rngs(0)
    with pytest.raises(ValueError, match=r"nnx.Skip: inputs must have one batch axis"):
        nnx.RNN(skip_rnn.nnx.Skip(nnx.GRUCell(F, 4, rngs=rngs), rngs=rngs))(xs)


def test_a_stack_gives_each_layer_that_draws_its_own_key():
    """``stack`` splits a step's key into one per layer (documented): a stack of layers that
    draw steps as its layers stepped one by one with those keys, and runs under ``unroll``."""
    layers = [sr.random_skip(sr.gru(4), 0.5), sr.skip(sr.gru(4), binarize="bernoulli")]
    cell = sr.stack(layers)
    params = cell.init(jax.random.key(0), F)
    state, x, key = cell.initial_state(params, 64), jnp.ones((64, F)), jax.random.key(3)
    got_state, got = cell.step(params, state, x, key)
    keys = jax.random.split(key, len(layers))
    for i, layer in enumerate(layers):
        want_state, want = layer.step(params[f"layers_{i}"], state[i], x, keys[i])
        _same(got_state[i], want_state)
        x = want.h
    _same(got, want)
    _, out = sr.unroll(cell, params, _inputs(), key=jax.random.key(4))
    assert set(np.unique(out.u)) <= {0.0, 1.0}


def test_skip_passes_its_cell_a_key_and_a_skip_layer_inside_it_has_gradients():
    """``skip`` hands the cell it wraps ``fold_in(key, 1)`` (a stack with a layer that draws),
    and a skip layer's integer counts inside a wrapped stack take no tangent."""
    inner = sr.stack([sr.random_skip(sr.gru(4), 0.5), sr.gru(4)])
    cell = sr.skip(inner)
    params = cell.init(jax.random.key(0), F)
    state, x, key = cell.initial_state(params, 8), jnp.ones((8, F)), jax.random.key(3)
    got_state, _ = cell.step(params, state, x, key)  # u_1 = 1: the cell's state is its step's
    want_state, _ = inner.step(params["cell"], state.cell, x, jax.random.fold_in(key, 1))
    _same(got_state.cell, want_state)
    nested = sr.random_skip(sr.stack([sr.skip(sr.lstm(4)), sr.lstm(4)]), 0.5)
    nested_params = nested.init(jax.random.key(0), F)
    grads = jax.grad(lambda p: jnp.sum(sr.unroll(nested, p, _inputs(), key=key)[1].h ** 2))(
        nested_params)
    leaves = jax.tree.leaves(grads)
    assert all(np.isfinite(g).all() for g in leaves) and any(np.abs(g).sum() > 0 for g in leaves)
