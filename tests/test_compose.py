"""The library where research code composes it: exported functions, parameters restored
without a target, each against the same computation without the feature."""

from __future__ import annotations

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
