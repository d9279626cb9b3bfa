"""Plain recurrent cells: the state transition ``s_t = S(s_{t-1}, x_t)`` of eq. 1.

Every factory returns a :class:`skip_rnn._src.base.Cell`. Each cell learns its initial state
``s_0`` (zeros at init, broadcast over the batch), as in the paper's experiments.

Precision: ``param_dtype`` is the dtype the parameters are stored in (float32 by default), as
in Flax's cells; ``dtype`` the dtype of the computation *and of the carried state*. That last
part differs from Flax, whose ``nn.LSTMCell(dtype=jnp.bfloat16)`` keeps a float32 carry (its
bfloat16 products promote to it): a bfloat16 carry halves the state the backward pass stores,
at a cost in accuracy measured over an sMNIST-length unroll (``benchmarks/carry_dtype.py``,
BENCHMARKS.md: mean ``|h - h64|`` 1.0e-3 against 6.9e-4 for a float32 carry, max 1.3e-2 against
7.0e-3). For Flax's behaviour keep ``dtype=None`` and cast the inputs. ``dtype=None``
(the default, Flax's) casts nothing: each step computes in the dtype JAX promotes the inputs,
parameters and state to, and ``s_0`` starts in the dtype it is stored in; float32 parameters
compute in float32 whatever the inputs (inputs wider than the parameters would change the
carry's dtype, which a scan refuses: give ``dtype`` then). ``dtype=jnp.bfloat16`` with
``param_dtype=jnp.float32`` is mixed precision: float32 parameters (and optimizer state),
read as bfloat16 at every step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from skip_rnn._src.base import (
    Array,
    Cell,
    Output,
    Params,
    PRNGKey,
    State,
    check_input,
    check_number,
    serializable,
)


@serializable
class LSTMState(NamedTuple):
    """LSTM state: cell ``c`` and hidden ``h``, each ``[B, H]``."""

    c: Array
    h: Array


def broadcast_rows(tree, batch_size: int):
    """Every leaf of ``tree`` (e.g. a learned ``s_0``, leaves ``[H]``) broadcast to
    ``[B, ...]``."""
    return jax.tree.map(lambda s: jnp.broadcast_to(s, (batch_size, *jnp.shape(s))), tree)


def _initial_state(dtype: DTypeLike | None, as_state: Callable[[Params], State] = lambda s: s
                   ) -> Callable[[Params, int], State]:
    """``initial_state(params, batch_size)``: ``as_state(params["s0"])`` broadcast to
    ``[B, ...]``, in ``dtype``."""
    return lambda params, batch_size: _cast(
        dtype, broadcast_rows(as_state(params["s0"]), batch_size))


def _cast(dtype: DTypeLike | None, tree):
    """Every leaf of ``tree`` as ``dtype``; ``dtype=None`` leaves ``tree`` as it is."""
    return tree if dtype is None else jax.tree.map(lambda a: jnp.asarray(a, dtype), tree)


def _kernels(key: PRNGKey, input_size: int, hidden_size: int, gates: int,
             param_dtype: DTypeLike) -> dict[str, Array]:
    """Input kernel (LeCun normal) and recurrent kernel (orthogonal), as Flax's cells do; drawn
    in float32 (``param_dtype`` if wider), then rounded to ``param_dtype``: a bfloat16 cell
    starts from the float32 cell's parameters of the same key, rounded."""
    draw = jnp.promote_types(param_dtype, jnp.float32)
    k_x, k_h = jax.random.split(key)
    w_x = jax.nn.initializers.lecun_normal()(k_x, (input_size, gates * hidden_size), draw)
    w_h = jax.nn.initializers.orthogonal()(k_h, (hidden_size, gates * hidden_size), draw)
    return _cast(param_dtype, {"w_x": w_x, "w_h": w_h})


def lstm(hidden_size: int, forget_bias: float = 1.0, *, dtype: DTypeLike | None = None,
         param_dtype: DTypeLike = jnp.float32) -> Cell:
    r"""Long short-term memory cell.

    .. math::
        i, f, g, o &= \mathrm{split}(x_t W_x + h_{t-1} W_h + b) \\
        c_t &= \sigma(f) \odot c_{t-1} + \sigma(i) \odot \tanh(g) \\
        h_t &= \sigma(o) \odot \tanh(c_t)

    Parameters: ``w_x`` ``[F, 4H]``, ``w_h`` ``[H, 4H]``, ``b`` ``[4H]`` with the gates in the
    order (i, f, g, o), and ``s0`` ``{"c": [H], "h": [H]}`` (plain dicts, as every parameter
    container of the library: they survive a checkpoint restored without a target). The update gate
    of a skip LSTM reads ``c_t`` (as the authors' code does).

    Args:
      hidden_size: ``H``.
      forget_bias: initial value of the forget-gate bias (TF's ``BasicLSTMCell`` and the
        authors' code add 1).
      dtype: of the computation and the state ``(c, h)``; ``None``: as the inputs and
        parameters promote (module docstring).
      param_dtype: of the stored parameters.

    Example:
      >>> import jax, jax.numpy as jnp, skip_rnn as sr
      >>> cell = sr.lstm(8)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> state = cell.initial_state(params, 2)
      >>> state, out = cell.step(params, state, jnp.ones((2, 3)))  # every cell: an Output
      >>> out.h.shape, out.u  # a plain cell updates at every step
      ((2, 8), Array([1., 1.], dtype=float32))
    """
    check_number("lstm", "hidden_size", hidden_size, integer=True, low=1)
    _check_float(dtype=dtype, param_dtype=param_dtype)
    H = hidden_size

    def init(key: PRNGKey, input_size: int) -> Params:
        check_number("lstm", "input_size", input_size, integer=True, low=1)
        b = jnp.zeros((4 * H,), param_dtype).at[H : 2 * H].set(forget_bias)
        zeros = jnp.zeros((H,), param_dtype)
        return {**_kernels(key, input_size, H, 4, param_dtype), "b": b,
                "s0": {"c": zeros, "h": zeros}}

    def step(params: Params, state: LSTMState, x: Array, key: PRNGKey | None = None):
        del key
        check_input("lstm", x, params["w_x"].shape[0], state.h)
        params, state, x = _cast(dtype, (params, state, x))
        z = x @ params["w_x"] + state.h @ params["w_h"] + params["b"]
        i, f, g, o = jnp.split(z, 4, axis=-1)
        c = jax.nn.sigmoid(f) * state.c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return LSTMState(c=c, h=h), Output.updated(h)

    return Cell(init, _initial_state(dtype, lambda s0: LSTMState(c=s0["c"], h=s0["h"])), step,
                output=lambda s: s.h, gate_input=lambda s: s.c)


def gru(hidden_size: int, reset_after: bool = True, gate_bias: float = 0.0, *,
        dtype: DTypeLike | None = None, param_dtype: DTypeLike = jnp.float32) -> Cell:
    r"""Gated recurrent unit, in either of its two common forms.

    ``reset_after=True`` (the cuDNN / Flax ``GRUCell`` form; Keras's ``reset_after=True``): the
    reset gate multiplies the recurrent product,

    .. math::
        r &= \sigma(x_t W_x^r + b^r + h_{t-1} W_h^r) \\
        z &= \sigma(x_t W_x^z + b^z + h_{t-1} W_h^z) \\
        n &= \tanh(x_t W_x^n + b^n + r \odot (h_{t-1} W_h^n + b_h^n)) \\
        h_t &= (1 - z) \odot n + z \odot h_{t-1}

    ``reset_after=False`` (TensorFlow 1.x's ``GRUCell``, the GRU of the authors' code,
    ``src/rnn_cells/basic_rnn_cells.py`` and ``skip_rnn_cells.py``): it multiplies
    ``h_{t-1}`` before the recurrent matrix, and there is no ``b_h^n``,

    .. math::
        n = \tanh(x_t W_x^n + b^n + (r \odot h_{t-1}) W_h^n)

    with ``r``, ``z`` and ``h_t`` as above. In both forms ``z`` keeps the old state:
    ``h_t = z ⊙ h_{t-1} + (1 - z) ⊙ n`` (TF writes ``u * state + (1 - u) * c``).

    Parameters: ``w_x`` ``[F, 3H]``, ``w_h`` ``[H, 3H]``, ``b`` ``[3H]`` in the gate order
    (r, z, n), ``s0`` ``[H]``, and with ``reset_after`` ``b_hn`` ``[H]``. ``b^r`` and ``b^z``
    start at ``gate_bias``, the others at 0. The update gate of a skip GRU reads ``h_t``.
    TF's ``[x, h]`` kernels are the row blocks: ``gates = [w_x; w_h][:, :2H]``,
    ``candidate = [w_x; w_h][:, 2H:]``.

    Args:
      hidden_size: ``H``.
      reset_after: the cuDNN / Flax form (``True``) or TF 1.x's (``False``).
      gate_bias: initial value of ``b^r`` and ``b^z`` (TF's ``GRUCell`` and the authors' code:
        1.0, "not reset and not update" at the start).
      dtype: of the computation and the state ``h``; ``None``: as the inputs and parameters
        promote (module docstring).
      param_dtype: of the stored parameters.

    Example:
      >>> import skip_rnn as sr
      >>> authors_gru = sr.gru(110, reset_after=False, gate_bias=1.0)
    """
    check_number("gru", "hidden_size", hidden_size, integer=True, low=1)
    _check_float(dtype=dtype, param_dtype=param_dtype)
    H = hidden_size

    def init(key: PRNGKey, input_size: int) -> Params:
        check_number("gru", "input_size", input_size, integer=True, low=1)
        zeros = jnp.zeros((H,), param_dtype)
        params = {**_kernels(key, input_size, H, 3, param_dtype),
                  "b": jnp.zeros((3 * H,), param_dtype).at[: 2 * H].set(gate_bias), "s0": zeros}
        return {**params, "b_hn": zeros} if reset_after else params

    def step(params: Params, h: Array, x: Array, key: PRNGKey | None = None):
        del key
        check_input("gru", x, params["w_x"].shape[0], h)
        params, h, x = _cast(dtype, (params, h, x))
        x_r, x_z, x_n = jnp.split(x @ params["w_x"] + params["b"], 3, axis=-1)
        if reset_after:
            h_r, h_z, h_n = jnp.split(h @ params["w_h"], 3, axis=-1)
        else:  # the n block of w_h waits for r
            h_r, h_z = jnp.split(h @ params["w_h"][:, : 2 * H], 2, axis=-1)
        r = jax.nn.sigmoid(x_r + h_r)
        z = jax.nn.sigmoid(x_z + h_z)
        if reset_after:
            n = jnp.tanh(x_n + r * (h_n + params["b_hn"]))
        else:
            n = jnp.tanh(x_n + (r * h) @ params["w_h"][:, 2 * H :])
        h = (1.0 - z) * n + z * h
        return h, Output.updated(h)

    return Cell(init, _initial_state(dtype), step, output=lambda h: h, gate_input=lambda h: h)


def stack(cells: Sequence[Cell], gate_layers: Sequence[int] = (-1,)) -> Cell:
    """Stacked cells: layer ``l`` reads the output of layer ``l - 1`` at the same step.

    Parameters: a dict with one parameter pytree per layer, ``{"layers_0": <bottom layer's>,
    "layers_1": ...}`` (the names of Flax's ``nn.Sequential``); the state is a tuple with one
    state per layer. The step's :class:`skip_rnn.Output` is the top layer's. Each layer keeps
    its own ``dtype`` and ``param_dtype`` (``stack([lstm(H, dtype=jnp.bfloat16), lstm(H,
    dtype=jnp.bfloat16)])``); a layer reads the one below in its own ``dtype``.

    Two ways to skip: ``skip(stack([...]))``, one gate for the whole stack (the paper's, §4),
    or a stack of skip cells, ``stack([skip(lstm(H)), skip(lstm(H))])``, each layer its own
    gate: a layer that skips copies its state, and the layer above reads that state's output.
    The stack's ``u`` is then the top layer's; each layer's :class:`skip_rnn.SkipState` counts
    its own updates (``num_updates``, with a straight-through gradient), so a budget on every
    layer is ``λ·Σ_l mean(final_state[l].num_updates)``. A step's ``key`` is split into one per
    layer (``jax.random.split(key, len(cells))``, layer ``l`` drawing from the ``l``-th), for
    layers that draw (``skip(..., binarize="bernoulli")``, :func:`skip_rnn.random_skip`).

    Args:
      cells: the layers, bottom first.
      gate_layers: which layers' states the update gate of a skip stack reads (§4.5: the top
        layer, i.e. ``W_p`` is zero for the others). Their gate inputs are concatenated.
    """
    cells = tuple(cells)
    if not cells:
        raise ValueError("stack: `cells` must hold at least one cell.")
    layers = [range(len(cells))[i] for i in _valid_layers(gate_layers, len(cells))]
    names = [f"layers_{i}" for i in range(len(cells))]

    def init(key: PRNGKey, input_size: int) -> Params:
        params = {}
        for name, cell, k in zip(names, cells, jax.random.split(key, len(cells)), strict=True):
            params[name] = cell.init(k, input_size)
            input_size = cell.output(cell.initial_state(params[name], 1)).shape[-1]
        return params

    def initial_state(params: Params, batch_size: int) -> State:
        return tuple(c.initial_state(params[n], batch_size) for n, c in zip(names, cells,
                                                                            strict=True))

    def step(params: Params, state: State, x: Array, key: PRNGKey | None = None):
        keys = [None] * len(cells) if key is None else jax.random.split(key, len(cells))
        new_state = []
        for name, cell, s, k in zip(names, cells, state, keys, strict=True):
            s, out = cell.step(params[name], s, x, k)
            new_state.append(s)
            x = out.h
        return tuple(new_state), out

    def gate_input(state: State) -> Array:
        return jnp.concatenate([cells[i].gate_input(state[i]) for i in layers], axis=-1)

    return Cell(init, initial_state, step, lambda s: cells[-1].output(s[-1]), gate_input)


def _valid_layers(gate_layers: Sequence[int], num_layers: int) -> tuple[int, ...]:
    gate_layers = tuple(gate_layers)
    if not gate_layers:
        raise ValueError("stack: `gate_layers` must be a non-empty list of layer indices.")
    for i in gate_layers:
        check_number("stack", "gate_layers", i, integer=True, low=-num_layers, high=num_layers)
    return gate_layers


def _check_float(**dtypes: DTypeLike | None) -> None:
    for name, dtype in dtypes.items():
        if dtype is not None and not jnp.issubdtype(dtype, jnp.floating):
            raise ValueError(f"`{name}` must be a floating-point dtype, got {dtype!r}.")

