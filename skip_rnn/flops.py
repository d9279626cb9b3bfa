"""Inference cost as the published paper counts it (a column of its Tables 1, 2, 3 and 6).

One multiply-accumulate of a matrix product is one FLOP, counted per *performed* state update:
a skipped step costs nothing, since :func:`skip_rnn.jump_unroll` never computes it. Biases,
nonlinearities and the readout are not counted. E.g. an LSTM of 110 units on 2 input features
does ``(2 + 110)·4·110 = 49,280`` per update: 2.46e6 for the 50 steps of the adding task.
"""

from __future__ import annotations

import jax

from skip_rnn.base import Cell
from skip_rnn.skip import SkipCell


def flops_per_update(cell: Cell, input_size: int) -> int:
    """Multiply-accumulates of one state update of ``cell`` on ``input_size`` features.

    A plain cell does ``Σ_layers (F_l + H_l)·G·H_l`` (``G`` = 4 for the LSTM, 3 for the GRU):
    the sizes of its 2-D kernels. A skip cell adds its gate's product ``W_p s_t`` (eq. 4), which
    it computes at every update.

    Example:
      >>> import skip_rnn as sr
      >>> sr.flops_per_update(sr.lstm(110), 1) * 784   # sequential MNIST, paper: 3.83e7
      38290560
    """
    shapes = jax.eval_shape(lambda key: cell.init(key, input_size), jax.random.key(0))
    params = shapes["cell"] if isinstance(cell, SkipCell) else shapes
    kernels = sum(leaf.size for leaf in jax.tree.leaves(params) if leaf.ndim == 2)
    return int(kernels + (shapes["w_p"].size if isinstance(cell, SkipCell) else 0))
