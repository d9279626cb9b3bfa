"""Independent references of the paper's equations, one step at a time, in float64.

Written from §3 of the paper (eqs. 1-5) and from the authors' TensorFlow code, not from the
library: plain Python loops, eq. 5 accumulated literally (``ũ + min(Δũ, 1 − ũ)``), ``round``
with ties up (eq. 6's ``≥``). :func:`run_stack` is NumPy, for forward values;
:func:`skip_gradient_reference` is the same recurrence in ``jax.numpy`` (for ``jax.grad``),
with ``Δũ`` placed as in Fig. 1 and the authors' code; :func:`paper_gradient_reference` is
eqs. 2-5 exactly as printed, also in ``jax.numpy``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def sigmoid(x):
    xp = jnp if isinstance(x, jax.Array) else np
    return 1.0 / (1.0 + xp.exp(-x))


def lstm_step(p, state, x, xp=np):
    c, h = state
    z = x @ p["w_x"] + h @ p["w_h"] + p["b"]
    i, f, g, o = xp.split(z, 4, axis=-1)
    c = sigmoid(f) * c + sigmoid(i) * xp.tanh(g)
    h = sigmoid(o) * xp.tanh(c)
    return (c, h)


def gru_step(p, h, x, xp=np):
    x_r, x_z, x_n = xp.split(x @ p["w_x"] + p["b"], 3, axis=-1)
    h_r, h_z, h_n = xp.split(h @ p["w_h"], 3, axis=-1)
    r = sigmoid(x_r + h_r)
    z = sigmoid(x_z + h_z)
    n = xp.tanh(x_n + r * (h_n + p["b_hn"]))
    return (1 - z) * n + z * h


def gru_tf_step(p, h, x, xp=np):
    """TensorFlow 1.x's ``GRUCell`` (the authors' ``BasicGRUCell``), on its ``[x, h]`` kernels:
    ``r, u = σ([x, h] K_gates + b_gates)``, ``c = tanh([x, r·h] K_candidate + b_candidate)``,
    ``h' = u·h + (1 − u)·c``; ``K = [w_x; w_h]``, gates its first ``2H`` columns."""
    H = h.shape[-1]
    kernel = xp.concatenate([p["w_x"], p["w_h"]], axis=0)
    gates = sigmoid(xp.concatenate([x, h], axis=-1) @ kernel[:, : 2 * H] + p["b"][: 2 * H])
    r, u = gates[..., :H], gates[..., H:]
    c = xp.tanh(xp.concatenate([x, r * h], axis=-1) @ kernel[:, 2 * H :] + p["b"][2 * H :])
    return u * h + (1 - u) * c


# For each kind: (step, initial state from params, output h, what the update gate reads).
KINDS = {
    "lstm": (lstm_step, lambda p: (p["s0"]["c"], p["s0"]["h"]), lambda s: s[1], lambda s: s[0]),
    "gru": (gru_step, lambda p: p["s0"], lambda s: s, lambda s: s),
    "gru_tf": (gru_tf_step, lambda p: p["s0"], lambda s: s, lambda s: s),
}


def layers(cell_params):
    """The layers' parameters, bottom first, of a stack's ``{"layers_0": ..., ...}`` or of one
    layer."""
    if "layers_0" not in cell_params:
        return [cell_params]
    return [cell_params[f"layers_{i}"] for i in range(len(cell_params))]


def run_stack(kinds, layer_params, x_seq, gate_layer=-1, skip_params=None, length=None):
    """One sequence ``x_seq`` ``[T, F]`` through a stack of layers, optionally skip-wrapped.

    Returns dict of per-step ``h`` ``[T, H]``, ``u``, ``u_tilde``, ``delta_u`` ``[T]`` and the
    final per-layer states. Steps at ``t >= length`` are padding: nothing changes, u = 0.
    """
    layer_params = [to_numpy(p) for p in layer_params]
    states = [KINDS[k][1](p) for k, p in zip(kinds, layer_params, strict=True)]
    u_tilde, delta_u = 1.0, None  # ũ_1 = 1: the first step always updates
    record = {"h": [], "u": [], "u_tilde": [], "delta_u": []}
    T = len(x_seq) if length is None else length
    for t, x in enumerate(x_seq):
        if t >= T:
            record["h"].append(KINDS[kinds[-1]][2](states[-1]))
            for name in ("u", "u_tilde", "delta_u"):
                record[name].append(0.0)
            continue
        u = 1.0 if (skip_params is None or u_tilde >= 0.5) else 0.0  # eq. 2
        ut_used = u_tilde if skip_params is not None else 1.0
        if u == 1.0:  # eq. 3: update ...
            inp = x
            for i, (kind, p) in enumerate(zip(kinds, layer_params, strict=True)):
                states[i] = KINDS[kind][0](p, states[i], inp)
                inp = KINDS[kind][2](states[i])
            if skip_params is not None:  # eq. 4, only when updating (Fig. 1d)
                gate = KINDS[kinds[gate_layer]][3](states[gate_layer])
                delta_u = sigmoid(gate @ np.asarray(skip_params["w_p"]) + skip_params["b_p"])
        # ... else copy: states unchanged, Δũ carried over.
        if skip_params is not None:  # eq. 5
            u_tilde = u * delta_u + (1 - u) * (u_tilde + min(delta_u, 1 - u_tilde))
        record["h"].append(KINDS[kinds[-1]][2](states[-1]))
        record["u"].append(u)
        record["u_tilde"].append(ut_used)
        record["delta_u"].append(delta_u if skip_params is not None else 1.0)
    out = {k: np.asarray(v, dtype=np.float64) for k, v in record.items()}
    out["states"] = states
    return out


def to_numpy(tree):
    if isinstance(tree, dict):
        return {k: to_numpy(v) for k, v in tree.items()}
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return type(tree)(*(np.asarray(v, np.float64) for v in tree))
    return np.asarray(tree, np.float64)


def skip_gradient_reference(kinds, layer_params, skip_params, xs, gradient):
    """A batch ``xs`` ``[B, T, F]`` through a skip-wrapped stack, in ``jax.numpy``, literally.

    ``gradient="eq5"``: eqs. 2-5 as printed, ``Δũ_t = u_t·σ(W_p s_t + b_p) + (1 − u_t)·Δũ_{t−1}``.
    ``gradient="reference_code"``: the authors' ``SkipLSTMCell`` / ``SkipGRUCell``
    (``src/rnn_cells/skip_rnn_cells.py``): state ``update_prob`` (starts 1) and
    ``cum_update_prob`` (starts 0);
    ``cum_t = cum_{t−1} + min(update_prob_{t−1}, 1 − cum_{t−1})``, ``u_t = round(cum_t)``
    (straight-through), ``update_prob_t = u_t·Δũ_t + (1 − u_t)·update_prob_{t−1}``, carried
    ``cum = (1 − u_t)·cum_t``. Returns ``h`` ``[B, T, H]`` and ``u`` ``[B, T]``.
    """

    def binary_round(x):  # value x >= 0.5 (ties up, as eq. 6), gradient 1
        return x + jax.lax.stop_gradient(jnp.where(x >= 0.5, 1.0, 0.0) - x)

    def mix(u, new, old):
        return jax.tree.map(lambda n, o: u[:, None] * n + (1 - u[:, None]) * o, new, old)

    batch = xs.shape[0]
    states = [jax.tree.map(lambda s: jnp.broadcast_to(s, (batch, *s.shape)), KINDS[k][1](p))
              for k, p in zip(kinds, layer_params, strict=True)]
    ones, zeros = jnp.ones(batch), jnp.zeros(batch)
    u_tilde, delta_u, cum = ones, ones, zeros
    hs, us = [], []
    for t in range(xs.shape[1]):
        if gradient == "reference_code":
            u_tilde = cum + jnp.minimum(delta_u, 1 - cum)
        u = binary_round(u_tilde)
        inp, candidates = xs[:, t], []
        for kind, p, s in zip(kinds, layer_params, states, strict=True):
            s = KINDS[kind][0](p, s, inp, xp=jnp)
            candidates.append(s)
            inp = KINDS[kind][2](s)
        gate = KINDS[kinds[-1]][3](candidates[-1])
        new_delta_u = sigmoid(gate @ skip_params["w_p"] + skip_params["b_p"])
        states = [mix(u, c, s) for c, s in zip(candidates, states, strict=True)]
        delta_u = u * new_delta_u + (1 - u) * delta_u
        if gradient == "reference_code":
            cum = (1 - u) * u_tilde
        else:  # eq. 5
            u_tilde = u * delta_u + (1 - u) * (u_tilde + jnp.minimum(delta_u, 1 - u_tilde))
        hs.append(KINDS[kinds[-1]][2](states[-1]))
        us.append(u)
    return jnp.stack(hs, 1), jnp.stack(us, 1)


def paper_gradient_reference(kinds, layer_params, skip_params, xs):
    """Eqs. 2-5 exactly as printed in §3, in ``jax.numpy`` (for ``jax.grad``): a batch ``xs``
    ``[B, T, F]`` through a skip-wrapped stack whose update gate reads the top layer.

    From ``ũ_1 = 1``, at every step ``t``:
    (2) ``u_t = round(ũ_t)``, ties up, with the straight-through gradient 1 (eq. 7);
    (3) ``s_t = u_t·S(s_{t−1}, x_t) + (1 − u_t)·s_{t−1}``, ``S`` the whole stack's transition;
    (4) ``Δũ_t = σ(W_p s_t + b_p)`` of that ``s_t``, computed at every step, skipped or not;
    (5) ``ũ_{t+1} = u_t·Δũ_t + (1 − u_t)·(ũ_t + min(Δũ_t, 1 − ũ_t))``.
    Returns ``h`` ``[B, T, H]`` (the top layer's, of ``s_t``) and ``u`` ``[B, T]``.
    """
    batch = xs.shape[0]
    s = [jax.tree.map(lambda v: jnp.broadcast_to(v, (batch, *v.shape)), KINDS[k][1](p))
         for k, p in zip(kinds, layer_params, strict=True)]
    u_tilde = jnp.ones(batch)
    hs, us = [], []
    for t in range(xs.shape[1]):
        u = u_tilde + jax.lax.stop_gradient(jnp.where(u_tilde >= 0.5, 1.0, 0.0) - u_tilde)  # (2)
        inp, transition = xs[:, t], []  # S(s_{t-1}, x_t): every layer reads the one below
        for kind, p, layer in zip(kinds, layer_params, s, strict=True):
            transition.append(KINDS[kind][0](p, layer, inp, xp=jnp))
            inp = KINDS[kind][2](transition[-1])
        s = [jax.tree.map(lambda new, old, u=u[:, None]: u * new + (1 - u) * old, n, o)
             for n, o in zip(transition, s, strict=True)]  # (3)
        gate = KINDS[kinds[-1]][3](s[-1])
        delta_u = sigmoid(gate @ skip_params["w_p"] + skip_params["b_p"])  # (4)
        u_tilde = u * delta_u + (1 - u) * (u_tilde + jnp.minimum(delta_u, 1 - u_tilde))  # (5)
        hs.append(KINDS[kinds[-1]][2](s[-1]))
        us.append(u)
    return jnp.stack(hs, 1), jnp.stack(us, 1)
