"""Inference cost as the published paper counts it (a column of its Tables 1, 2, 3 and 6).

One multiply-accumulate of a matrix product is one FLOP, counted per *performed* state update:
a skipped step costs nothing, since :func:`skip_rnn.jump_unroll` never computes it. Biases,
nonlinearities and the readout are not counted. E.g. an LSTM of 110 units on 2 input features
does ``(2 + 110)·4·110 = 49,280`` per update: 2.46e6 for the 50 steps of the adding task.
"""

from __future__ import annotations

import math

import jax
from jax.extend.core import ClosedJaxpr, Jaxpr

from skip_rnn._src.base import Cell

# Primitives whose inner computation runs an unknown or data-dependent number of times.
_CONTROL_FLOW = ("while", "cond", "scan")


def flops_per_update(cell: Cell, input_size: int) -> int:
    """Multiply-accumulates of one state update of ``cell`` on ``input_size`` features.

    Counted on the computation ``cell.step`` traces for one example (``jax.make_jaxpr``, nothing
    runs): every matrix product and every convolution, one per product term. A matrix product
    ``[1, K] @ [K, N]`` is ``K·N``; a ``k×k`` convolution from ``C_in`` to ``C_out`` channels at
    ``P`` output positions is ``k·k·C_in·C_out·P``. So a plain LSTM or GRU does
    ``Σ_layers (F_l + H_l)·G·H_l`` (``G`` = 4, 3); a skip cell adds its gate's ``W_p s_t``
    (eq. 4, ``D`` terms), computed at every update. Inputs get the spatial axes of the cell's
    output (``from_linen(nn.ConvLSTMCell(...), spatial_shape=(h, w))``: ``[1, h, w, F]``).

    Raises:
      ValueError: if the step contains a loop or a branch (``while``, ``cond``, ``scan``),
        whose cost per update the trace does not tell.

    Example:
      >>> import skip_rnn as sr
      >>> sr.flops_per_update(sr.lstm(110), 1) * 784   # sequential MNIST, paper: 3.83e7
      38290560
    """
    params = jax.eval_shape(lambda key: cell.init(key, input_size), jax.random.key(0))
    state = jax.eval_shape(lambda p: cell.initial_state(p, 1), params)
    out = jax.eval_shape(cell.output, state)
    x = jax.ShapeDtypeStruct((1, *out.shape[1:-1], input_size), out.dtype)
    trace = jax.make_jaxpr(lambda p, s, x: cell.step(p, s, x, jax.random.key(0)))(params, state, x)
    return _multiply_accumulates(trace.jaxpr)


def _multiply_accumulates(jaxpr: Jaxpr) -> int:
    """Product terms of the ``dot_general`` and ``conv_general_dilated`` in ``jaxpr``, nested
    calls (``jit``, ``custom_jvp_call`` ...) included."""
    total = 0
    for eqn in jaxpr.eqns:
        name, out = eqn.primitive.name, eqn.outvars[0].aval.shape
        if name == "dot_general":  # each output element sums over the contracted axes
            (contracted, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += math.prod(out) * math.prod(lhs[i] for i in contracted)
        elif name == "conv_general_dilated":  # each output element: kernel size / C_out terms
            rhs = eqn.invars[1].aval.shape
            out_channels = rhs[eqn.params["dimension_numbers"].rhs_spec[0]]
            total += math.prod(out) * math.prod(rhs) // out_channels
        elif name in _CONTROL_FLOW:
            raise ValueError(f"flops_per_update: the step contains `{name}`; its number of "
                             "iterations per update is not known from the trace.")
        else:
            total += sum(_multiply_accumulates(sub) for sub in _inner_jaxprs(eqn.params))
    return total


def _inner_jaxprs(params: dict) -> list[Jaxpr]:
    """The jaxprs a call primitive runs (``jit``'s ``jaxpr``, ``custom_jvp_call``'s
    ``call_jaxpr``, ``jax.checkpoint``'s ``jaxpr`` ...)."""
    inner = [v.jaxpr if isinstance(v, ClosedJaxpr) else v for v in params.values()]
    return [v for v in inner if isinstance(v, Jaxpr)]
