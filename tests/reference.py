"""An independent NumPy reference of the paper's equations, one sequence and one step at a time.

Written from §3 of the paper (eqs. 1-5), not from the library: plain Python loops, float64,
eq. 5 accumulated literally (``ũ + min(Δũ, 1 − ũ)``), ``round`` with ties up (eq. 6's ``≥``).
"""

from __future__ import annotations

import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def lstm_step(p, state, x):
    c, h = state
    z = x @ p["w_x"] + h @ p["w_h"] + p["b"]
    i, f, g, o = np.split(z, 4)
    c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    h = sigmoid(o) * np.tanh(c)
    return (c, h)


def gru_step(p, h, x):
    x_r, x_z, x_n = np.split(x @ p["w_x"] + p["b"], 3)
    h_r, h_z, h_n = np.split(h @ p["w_h"], 3)
    r = sigmoid(x_r + h_r)
    z = sigmoid(x_z + h_z)
    n = np.tanh(x_n + r * (h_n + p["b_hn"]))
    return (1 - z) * n + z * h


# For each kind: (step, initial state from params, output h, what the update gate reads).
KINDS = {
    "lstm": (lstm_step, lambda p: (p["s0"].c, p["s0"].h), lambda s: s[1], lambda s: s[0]),
    "gru": (gru_step, lambda p: p["s0"], lambda s: s, lambda s: s),
}


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
