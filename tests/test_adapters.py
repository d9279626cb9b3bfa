"""Flax's own cells under the skip equations: ``sr.from_linen``, ``linen.Skip``, ``nnx.Skip``."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import skip_rnn as sr
import skip_rnn.nnx
from skip_rnn._src.unroll import mask_padding
from skip_rnn.linen import Skip, SkipLSTMCell
from tests import reference

B, T, F, H = 4, 20, 3, 16
XS = jax.random.normal(jax.random.key(1), (B, T, F))
VIDEO = jax.random.normal(jax.random.key(2), (B, T, 3, 3, 2))  # [B, T, height, width, F]
LINEN = {
    "lstm": (nn.OptimizedLSTMCell(H), ()),
    "gru": (nn.GRUCell(H), ()),
    "mgu": (nn.MGUCell(H), ()),
    "conv_lstm": (nn.ConvLSTMCell(2, (2, 2)), (3, 3)),
}
CELLS = {name: sr.skip(sr.from_linen(m, spatial_shape=s)) for name, (m, s) in LINEN.items()}


def _inputs(name):
    return VIDEO if name == "conv_lstm" else XS


def _gate(b_p, size=H):
    """``w_p`` ``[size]``, standard normal, and ``b_p``: near 0, cells both update and skip."""
    return {"w_p": jnp.asarray(np.random.default_rng(3).normal(size=size), jnp.float32),
            "b_p": jnp.asarray(b_p)}


def _random_like(shapes, seed=0):
    """Normal values for a pytree of shapes: kernels with std ``1/sqrt(fan-in)``, vectors 0.1.
    Drawn with NumPy: compiling Flax's initializers would take most of this file's time."""
    rng = np.random.default_rng(seed)

    def draw(s):
        scale = 1 / np.sqrt(np.prod(s.shape[:-1])) if len(s.shape) > 1 else 0.1
        return jnp.asarray(scale * rng.normal(size=s.shape), s.dtype)

    return jax.tree.map(draw, shapes)


@functools.cache
def _params(name):
    """Skipping parameters of ``CELLS[name]``, made once."""
    init = functools.partial(CELLS[name].init, input_size=_inputs(name).shape[-1])
    params = _random_like(jax.eval_shape(init, jax.random.key(0)))
    return {**params, **_gate(-0.5, params["w_p"].size)}


@functools.cache
def _plain(cell_type):
    """``nn.RNN(cell_type(H))``, its variables and its jitted ``apply``."""
    rnn = nn.RNN(cell_type(H))
    return rnn, _random_like(jax.eval_shape(rnn.init, jax.random.key(0), XS)), jax.jit(rnn.apply)


def linen_stepwise(cell, **rnn_kwargs):
    """``run(variables, xs, **apply_kwargs) -> (result, out)``: ``nn.RNN(cell)``'s result (the
    cells return ``h``) and the :class:`sr.Output` of every step that the cells sow."""
    rnn = nn.RNN(cell, variable_axes={"intermediates": 1}, **rnn_kwargs)

    def run(variables, xs, **kwargs):
        result, state = rnn.apply(variables, xs, mutable=["intermediates"], **kwargs)
        return result, state["intermediates"]["cell"]["output"][0]

    return run


_skip_gru = jax.jit(lambda variables, xs: linen_stepwise(Skip(nn.GRUCell(H)))(variables, xs)[1])


def _loss(out):
    """A task loss on every output plus the budget loss (eq. 8); ``out`` as auxiliary data."""
    return _count_loss(out.h, jnp.sum(out.u, axis=1)), out


def _count_loss(h, num_updates):
    """:func:`_loss` from the outputs ``h`` and the updates per sequence (a skip carry's
    ``num_updates``): eq. 8 as ``λ·mean(num_updates)``."""
    return jnp.mean(jnp.square(h - 1.0)) + 1e-2 * jnp.mean(num_updates)


@functools.partial(jax.jit, static_argnums=0)
def _unroll(name, params, xs, lengths=None):
    return sr.unroll(CELLS[name], params, xs, lengths)


@functools.partial(jax.jit, static_argnums=0)
def _jump(name, params, xs, lengths=None):
    return sr.jump_unroll(CELLS[name], params, xs, lengths)


def test_linen_skip_with_large_bias_is_the_plain_flax_rnn():
    _, variables, plain = _plain(nn.GRUCell)
    dropped_in = {"cell": variables["params"]["cell"], **_gate(30.0)}
    out = _skip_gru({"params": {"cell": dropped_in}}, XS)
    np.testing.assert_array_equal(out.u, 1.0)
    np.testing.assert_allclose(out.h, plain(variables, XS), rtol=1e-6, atol=1e-7)


def test_linen_skip_copies_the_carry_on_skipped_steps_and_obeys_eq6():
    _, variables, _ = _plain(nn.GRUCell)
    params = {"cell": variables["params"]["cell"], **_gate(-1.0)}
    out = jax.tree.map(np.asarray, _skip_gru({"params": {"cell": params}}, XS))
    skipped = out.u[:, 1:] == 0
    assert 0.2 < skipped.mean() < 0.8, skipped.mean()
    # A GRU's carry is h: eq. 3 with u = 0 copies it bit for bit, and Δũ with it (Fig. 1d).
    np.testing.assert_array_equal(out.h[:, 1:][skipped], out.h[:, :-1][skipped])
    np.testing.assert_array_equal(out.delta_u[:, 1:][skipped], out.delta_u[:, :-1][skipped])
    observed, predicted = [], []  # skips after each update followed by another; eq. 6
    for b, t in zip(*np.nonzero(out.u[:, :-1]), strict=True):
        following = np.flatnonzero(out.u[b, t + 1 :])
        if len(following):
            observed.append(following[0])
            predicted.append(int(sr.skips_after_update(out.delta_u[b, t])))
    assert observed == predicted and len(set(observed)) > 1, (observed, predicted)


@pytest.mark.parametrize("name", ["lstm", "conv_lstm"])
def test_from_linen_unrolls_as_nn_rnn(name):
    module, spatial_shape = LINEN[name]
    params, xs = _params(name)["cell"], _inputs(name)
    want = jax.jit(nn.RNN(module).apply)({"params": {"cell": params["params"]}}, xs)
    cell = sr.from_linen(module, spatial_shape=spatial_shape)
    _, out = jax.jit(functools.partial(sr.unroll, cell))(params, xs)
    np.testing.assert_allclose(out.h, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(LINEN))
def test_jump_unroll_equals_unroll_on_from_linen_cells(name):
    params, xs, lengths = _params(name), _inputs(name), jnp.array([T, 13, 5, 1])
    want_state, want = _unroll(name, params, xs, lengths)
    state, out, info = _jump(name, params, xs, lengths)
    assert out.h.shape == xs.shape[:-1] + (want.h.shape[-1],)
    assert 0 < want.u.sum() < lengths.sum() - B, "the model must both skip and update"
    np.testing.assert_array_equal(out.u, want.u)
    np.testing.assert_array_equal(info.num_updates, want.u.sum(axis=1))
    for got, expected in zip(jax.tree.leaves((state, out)), jax.tree.leaves((want_state, want)),
                             strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "name, gate_input, read",
    [("lstm", None, lambda carry: carry[0]),  # c, as the paper
     ("lstm", lambda carry: carry[1], lambda carry: carry[1]),
     ("gru", None, lambda carry: carry),
     ("conv_lstm", None, lambda carry: carry[0].reshape(B, -1))],  # c, flattened
    ids=["lstm_c", "lstm_h_when_asked", "gru_h", "conv_lstm_c"],
)
def test_gate_reads_the_first_leaf_of_the_carry_unless_told(name, gate_input, read):
    module, spatial_shape = LINEN[name]
    kwargs = {"spatial_shape": spatial_shape}
    if gate_input is not None:
        kwargs["gate_input"] = gate_input
    cell = sr.skip(sr.from_linen(module, **kwargs))
    params, x = _params(name), _inputs(name)[:, 0]
    _, out = cell.step(params, cell.initial_state(params, B), x)
    carry = module.initialize_carry(jax.random.key(0), x.shape)
    carry, _ = module.apply(params["cell"], carry, x)
    expected = jax.nn.sigmoid(read(carry) @ params["w_p"] + params["b_p"])  # eq. 4
    np.testing.assert_allclose(out.delta_u, expected, rtol=1e-6)


def test_learned_initial_state_is_a_parameter_started_from_initialize_carry():
    cell = sr.from_linen(nn.OptimizedLSTMCell(H, carry_init=nn.initializers.ones),
                         learned_initial_state=True)
    params = jax.jit(cell.init, static_argnums=1)(jax.random.key(0), F)
    assert sorted(params) == ["params", "s0"]
    assert sorted(params["s0"]) == ["0", "1"]  # the carry (c, h), as flax.serialization
    for s0 in params["s0"].values():  # without the batch axis, as initialize_carry made them
        np.testing.assert_array_equal(s0, np.ones(H))
    s0 = (jnp.arange(H) / H, -jnp.arange(H) / H)
    state = cell.initial_state({**params, "s0": {"0": s0[0], "1": s0[1]}}, B)
    for got, want in zip(state, s0, strict=True):
        np.testing.assert_array_equal(got, np.broadcast_to(want, (B, H)))


def _nnx_layout(linen_params):
    """Linen ``Skip(nn.LSTMCell)`` parameters named as ``nnx.Skip(nnx.LSTMCell)``'s."""
    cell = {("if_" if name == "if" else name): v for name, v in linen_params["cell"].items()}
    return {**linen_params, "cell": cell}


def _nnx_lstm_skip(params, **kwargs):
    """``nnx.Skip(nnx.LSTMCell(F, H), **kwargs)`` holding Linen ``Skip(nn.LSTMCell(H))``'s
    ``params``."""

    def build():
        rngs = nnx.Rngs(0)
        return skip_rnn.nnx.Skip(nnx.LSTMCell(F, H, rngs=rngs), rngs=rngs, **kwargs)

    graphdef, state = nnx.split(nnx.eval_shape(build))
    nnx.replace_by_pure_dict(state, _nnx_layout(params))
    return nnx.merge(graphdef, state)


def _same_trees(got, want):
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7)


def _with_grad(run):
    """``run(params) -> out`` as a jitted ``params -> ((loss, out), grads)``."""
    return jax.jit(jax.value_and_grad(lambda p: _loss(run(p)), has_aux=True))


def _reference_run(params, gradient):
    """Linen ``Skip(nn.LSTMCell(H))``'s ``params`` through the literal ``jax.numpy`` recurrence of
    :mod:`tests.reference` (``gradient``'s form), with Flax's zero initial carry: an
    ``sr.Output`` with ``h`` and ``u``."""
    cell = params["cell"]
    layer = {"w_x": jnp.concatenate([cell[g]["kernel"] for g in ("ii", "if", "ig", "io")], 1),
             "w_h": jnp.concatenate([cell[g]["kernel"] for g in ("hi", "hf", "hg", "ho")], 1),
             "b": jnp.concatenate([cell[g]["bias"] for g in ("hi", "hf", "hg", "ho")]),
             "s0": {"c": jnp.zeros(H), "h": jnp.zeros(H)}}
    if gradient == "paper":
        h, u = reference.paper_gradient_reference(["lstm"], [layer], params, XS)
    else:
        h, u = reference.skip_gradient_reference(["lstm"], [layer], params, XS, gradient)
    return sr.Output(h, u, u, u)


@functools.cache
def _linen_lstm_skip(gradient):
    """Linen ``Skip(nn.LSTMCell(H), gradient=gradient)``: skipping parameters, the outputs on
    ``XS`` and the loss gradients, checked finite and non-zero for every parameter, and
    against the reference recurrence (:func:`_reference_run`)."""
    _, variables, _ = _plain(nn.LSTMCell)
    params = {"cell": variables["params"]["cell"], **_gate(-0.5)}
    run = linen_stepwise(Skip(nn.LSTMCell(H), gradient=gradient))
    (_, out), grads = _with_grad(lambda p: run({"params": {"cell": p}}, XS)[1])(params)
    assert 0 < out.u.sum() < B * T, "the model must both skip and update"
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        assert np.all(np.isfinite(g)) and np.any(g != 0), path
    # Op by op: compiling the reference's Python loop would cost more than running it.
    (_, want), want_grads = jax.value_and_grad(lambda p: _loss(_reference_run(p, gradient)),
                                               has_aux=True)(params)
    np.testing.assert_array_equal(out.u, want.u)
    np.testing.assert_allclose(out.h, want.h, rtol=1e-5, atol=1e-6)
    for g, w in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6)
    return params, out, grads


@pytest.mark.parametrize("gradient", ["paper", "eq5", "reference_code"])
def test_nnx_skip_gives_the_linen_skips_numbers_and_gradients(gradient):
    params, want, grads = _linen_lstm_skip(gradient)

    def nnx_loss(rnn):
        carry, hs = rnn(XS)
        return _count_loss(hs, carry.num_updates), (carry, hs)

    rnn = nnx.RNN(_nnx_lstm_skip(params, gradient=gradient), return_carry=True)
    (_, (carry, hs)), nnx_grads = nnx.jit(nnx.value_and_grad(nnx_loss, has_aux=True))(rnn)
    np.testing.assert_allclose(hs, want.h, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(carry.num_updates, want.u.sum(axis=1))
    _same_trees(nnx.to_pure_dict(nnx_grads)["cell"], _nnx_layout(grads))


def test_the_gradient_form_reaches_the_gate():
    eq5, reference_code = (_linen_lstm_skip(g)[2]["b_p"] for g in ("eq5", "reference_code"))
    assert not np.allclose(eq5, reference_code)


def test_skip_from_linen_is_linen_skip_and_learns_s0():
    params, want, grads = _linen_lstm_skip("eq5")
    cell = sr.skip(sr.from_linen(nn.LSTMCell(H), learned_initial_state=True))
    s0 = {"0": jnp.zeros(H), "1": jnp.zeros(H)}  # Flax's initial carry (c, h)
    (_, out), pure_grads = _with_grad(lambda p: sr.unroll(cell, p, XS)[1])(
        {**params, "cell": {"params": params["cell"], "s0": s0}})
    _same_trees(out, want)
    s0_grads = pure_grads["cell"].pop("s0")
    _same_trees({**pure_grads, "cell": pure_grads["cell"]["params"]}, grads)
    for g in s0_grads.values():
        assert np.all(np.isfinite(g)) and np.any(g != 0)


LENGTHS = jnp.array([T, 13, 5, 1])  # >= 1: Flax gives length 0 the carry after the padding
VALID = np.arange(T) < np.asarray(LENGTHS)[:, None]


def _loss_with_lengths(cell, run, mask):
    """``run(model) -> (final_state, out)`` as ``model -> (loss, (final_state, out))``: a task
    loss on ``cell.output(final_state)`` plus the budget loss (eq. 8) on ``out.u``, masked by
    ``mask_padding`` if ``mask``."""

    def loss(model):
        state, out = run(model)
        gates = mask_padding(out, LENGTHS) if mask else out
        task = jnp.mean(jnp.square(cell.output(state) - 1.0))
        return task + sr.budget_loss(gates.u, 1e-2), (state, out)

    return loss


def _assert_padding_as_unroll(got, want):
    """``got``, from a wrapper in Flax's RNN with ``seq_lengths`` (its output unmasked), against
    ``want``, from ``sr.unroll(lengths=)``, both ``((loss, (final_state, out)), grads)``: the
    same final state, outputs on valid steps, gates once masked, loss and gradients."""
    (loss, (state, out)), grads = got
    (want_loss, (want_state, want_out)), want_grads = want
    assert 0 < want_out.u.sum() < LENGTHS.sum() - B, "the model must both skip and update"
    assert np.any(np.asarray(out.u)[~VALID]), "Flax's RNN gates the padded steps"
    _same_trees(state, want_state)
    np.testing.assert_allclose(np.asarray(out.h)[VALID], np.asarray(want_out.h)[VALID],
                               rtol=1e-5, atol=1e-7)
    _same_trees(mask_padding(out, LENGTHS)[1:], want_out[1:])  # u, ũ, Δũ; 0 on padded steps
    np.testing.assert_allclose(loss, want_loss, rtol=1e-6)
    _same_trees(grads, want_grads)


@functools.cache
def _unrolled_with_lengths(name):
    """``sr.unroll(lengths=LENGTHS)`` of the skip cell that the Linen wrapper ``name`` runs:
    ``(cell, params, ((loss, (final_state, out)), grads))``, the parameters and gradients in
    the wrapper's layout (below ``nn.RNN``'s ``"cell"``)."""
    if name == "SkipLSTMCell":  # the pure cell's parameters under "cell"
        cell = sr.skip(sr.lstm(H))
        shapes = jax.eval_shape(functools.partial(cell.init, input_size=F), jax.random.key(0))
        params = {"cell": {**_random_like(shapes), **_gate(-0.5)}}

        def pure(p):
            return p["cell"]
    else:  # Skip(nn.LSTMCell(H)): the Linen cell's parameters one level down
        cell = sr.skip(sr.from_linen(nn.LSTMCell(H)))
        params = {"cell": _plain(nn.LSTMCell)[1]["params"]["cell"], **_gate(-0.5)}

        def pure(p):
            return {**p, "cell": {"params": p["cell"]}}

    loss = _loss_with_lengths(cell, lambda p: sr.unroll(cell, pure(p), XS, LENGTHS), False)
    return cell, params, jax.jit(jax.value_and_grad(loss, has_aux=True))(params)


@pytest.mark.parametrize("name", ["Skip(nn.LSTMCell)", "SkipLSTMCell"])
def test_linen_skip_cells_with_seq_lengths_and_mask_padding_are_unroll_with_lengths(name):
    cell, params, want = _unrolled_with_lengths(name)
    run = linen_stepwise(SkipLSTMCell(H) if name == "SkipLSTMCell" else Skip(nn.LSTMCell(H)),
                         return_carry=True)

    def carry_and_gates(p):
        (carry, _), out = run({"params": {"cell": p}}, XS, seq_lengths=LENGTHS)
        return carry, out

    loss = _loss_with_lengths(cell, carry_and_gates, True)
    got = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
    _assert_padding_as_unroll(got, want)
    np.testing.assert_array_equal(got[0][1][0].num_updates, _valid_updates(want))


def _valid_updates(want):
    """The updates per sequence on valid steps of ``unroll``'s ``want``: eq. 8's count."""
    return np.asarray(want[0][1][1].u).sum(axis=1)


def test_the_linen_carry_counts_the_budget_with_unrolls_value_and_gradient():
    cell, params, ((want_loss, _), want_grads) = _unrolled_with_lengths("SkipLSTMCell")
    rnn = nn.RNN(SkipLSTMCell(H), return_carry=True)

    def loss(p):  # no mask to remember: the carry holds the count of valid steps
        carry, _ = rnn.apply({"params": {"cell": p}}, XS, seq_lengths=LENGTHS)
        return jnp.mean(jnp.square(cell.output(carry) - 1.0)) + 1e-2 * jnp.mean(
            carry.num_updates)

    value, grads = jax.jit(jax.value_and_grad(loss))(params)
    np.testing.assert_allclose(value, want_loss, rtol=1e-6)
    _same_trees(grads, want_grads)


def test_nnx_skip_with_seq_lengths_and_mask_padding_is_unroll_with_lengths():
    cell, params, ((want_loss, (want_state, want_out)), want_grads) = _unrolled_with_lengths(
        "Skip(nn.LSTMCell)")

    def loss(rnn):
        carry, hs = rnn(XS, seq_lengths=LENGTHS)
        task = jnp.mean(jnp.square(cell.output(carry) - 1.0))
        return task + 1e-2 * jnp.mean(carry.num_updates), (carry, hs)

    rnn = nnx.RNN(_nnx_lstm_skip(params), return_carry=True)
    (value, (carry, hs)), grads = nnx.jit(nnx.value_and_grad(loss, has_aux=True))(rnn)
    _same_trees(carry, want_state)
    np.testing.assert_allclose(np.asarray(hs)[VALID], np.asarray(want_out.h)[VALID],
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(value, want_loss, rtol=1e-6)
    _same_trees(nnx.to_pure_dict(grads)["cell"], _nnx_layout(want_grads))


def test_wrappers_keep_the_hard_budget():
    _, variables, _ = _plain(nn.GRUCell)
    params = {"params": {"cell": {"cell": variables["params"]["cell"], **_gate(30.0)}}}
    u = jax.jit(linen_stepwise(Skip(nn.GRUCell(H), max_updates=3)))(params, XS)[1].u
    np.testing.assert_array_equal(u, np.repeat([[1.0] * 3 + [0.0] * (T - 3)], B, axis=0))
    rngs = nnx.Rngs(0)
    nnx_skip = skip_rnn.nnx.Skip(nnx.GRUCell(F, H, rngs=rngs), max_updates=3, rngs=rngs)
    nnx_skip.b_p[...] = 30.0
    count = nnx.jit(lambda rnn: rnn(XS)[0].num_updates)(nnx.RNN(nnx_skip, return_carry=True))
    np.testing.assert_array_equal(count, 3.0)


def test_wrappers_take_the_update_bias_and_draw_bernoulli_gates_per_step():
    rnn = nn.RNN(Skip(nn.GRUCell(H), binarize="bernoulli", update_bias=-0.3),
                 split_rngs={"params": False, "skip": True})
    variables = jax.jit(rnn.init)({"params": jax.random.key(0), "skip": jax.random.key(1)}, XS)
    assert float(variables["params"]["cell"]["b_p"]) == pytest.approx(-0.3)
    run = linen_stepwise(Skip(nn.GRUCell(H), binarize="bernoulli", update_bias=-0.3),
                         split_rngs={"params": False, "skip": True})
    apply = jax.jit(lambda key: run(variables, XS, rngs={"skip": key})[1].u)
    u = apply(jax.random.key(2))
    assert set(np.unique(u[:, 1:])) == {0.0, 1.0}
    assert not np.array_equal(u, apply(jax.random.key(3)))
    # a fresh draw at every step: E[u_t | ũ_t] = ũ_t (one key reused over the steps biases it)
    out = run(variables, jax.random.normal(jax.random.key(4), (512, T, F)),
              rngs={"skip": jax.random.key(5)})[1]
    diff = np.asarray(out.u - out.u_tilde)[:, 1:]
    assert abs(diff.mean()) < 4 * diff.std() / np.sqrt(diff.size)

    rngs = nnx.Rngs(params=0, skip=1)
    nnx_rnn = nnx.RNN(skip_rnn.nnx.Skip(nnx.GRUCell(F, H, rngs=rngs), binarize="bernoulli",
                                        update_bias=-0.3, rngs=rngs), return_carry=True)
    assert float(nnx_rnn.cell.b_p[...]) == pytest.approx(-0.3)
    run = nnx.jit(lambda rnn: rnn(XS)[0].num_updates)
    first, second = run(nnx_rnn), run(nnx_rnn)  # the "skip" stream advances: new draws
    assert np.all((first >= 1) & (first < T)) and not np.array_equal(first, second)


def test_from_linen_asks_for_the_spatial_shape_of_convolutional_cells():
    with pytest.raises(ValueError, match="spatial_shape"):
        sr.from_linen(nn.ConvLSTMCell(2, (2, 2)))


def test_the_skip_adapters_refuse_unknown_settings_when_built():
    from skip_rnn.linen import Skip

    with pytest.raises(ValueError, match="`binarize` must be 'round' or 'bernoulli'"):
        Skip(nn.GRUCell(4), binarize="sample")
    with pytest.raises(ValueError, match="`gradient` must be one of"):
        SkipLSTMCell(4, gradient="eq6")
    with pytest.raises(ValueError, match="`max_updates` must be an integer >= 1"):
        skip_rnn.linen.SkipGRUCell(4, max_updates=0)
    with pytest.raises(ValueError, match="`gradient` must be one of"):
        skip_rnn.nnx.Skip(nnx.GRUCell(2, 4, rngs=nnx.Rngs(0)), gradient="eq6",
                          rngs=nnx.Rngs(0))


def test_linen_skip_runs_in_float64_under_x64():
    """The carry's gate takes the dtype the step computes it in (float64 parameters, x64)."""
    with jax.enable_x64(True):
        rnn = nn.RNN(Skip(nn.GRUCell(H, param_dtype=jnp.float64)), return_carry=True)
        xs = XS.astype(jnp.float64)
        variables = jax.tree.map(lambda a: a.astype(jnp.float64),
                                 rnn.init(jax.random.key(0), xs))
        carry, h = rnn.apply(variables, xs)
        assert h.dtype == carry.u_tilde.dtype == carry.delta_u.dtype == jnp.float64
