r"""The random-skip baseline of the published paper (Tables 1 and 2, "LSTM (p_skip = 0.5)").

.. math::
    u_t &\sim \mathrm{Bernoulli}(1 - p_\mathrm{skip}) \\
    s_t &= u_t \cdot S(s_{t-1}, x_t) + (1 - u_t) \cdot s_{t-1}

independent of the input, at every step including the first (the paper's 50.1% and 392.03 / 784
updates at ``p_skip = 0.5`` leave no room for a forced first update). A skipped step copies the
state exactly, as in eq. 3. The gate has no parameters and no gradient.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from skip_rnn._src.base import (
    Array,
    Cell,
    Output,
    Params,
    PRNGKey,
    SkipCell,
    State,
    check_number,
)
from skip_rnn._src.skip import select


def random_skip(cell: Cell, p_skip: float | Array) -> Cell:
    """Wraps ``cell`` so that each step is skipped with probability ``p_skip``.

    The parameters and state are ``cell``'s; ``step`` needs a ``key``
    (``sr.unroll(..., key=)``) and emits an :class:`skip_rnn.Output` with ``u`` in {0, 1} and
    ``u_tilde = delta_u = 1 - p_skip``. ``p_skip`` may be a traced scalar (e.g. one per
    member of a population).

    Args:
      cell: the wrapped plain cell (a :class:`skip_rnn.SkipCell` is refused); a step's key
        draws ``u_t``, and ``fold_in(key, 1)`` is passed to ``cell``.
      p_skip: probability of skipping a step, in ``[0, 1)``.

    Example:
      >>> import jax, jax.numpy as jnp, skip_rnn as sr
      >>> cell = sr.random_skip(sr.lstm(8), p_skip=0.5)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> _, out = sr.unroll(cell, params, jnp.ones((2, 1000, 3)), key=jax.random.key(1))
      >>> bool(abs(float(out.u.mean()) - 0.5) < 0.05)
      True
    """
    check_number("random_skip", "p_skip", p_skip, low=0, high=1)
    if isinstance(cell, SkipCell):
        raise ValueError("random_skip: `cell` is a skip cell, whose gate decides its skips; "
                         "wrap the plain cell.")

    def step(params: Params, state: State, x: Array, key: PRNGKey | None = None):
        if key is None:
            raise ValueError("random_skip draws u_t: pass `key` to unroll/step.")
        # u_t from `key`; a wrapped cell that draws (a stack with a drawing layer) from its own
        candidate, _ = cell.step(params, state, x, jax.random.fold_in(key, 1))
        batch_size = jax.tree.leaves(state)[0].shape[0]
        keep = 1.0 - jnp.asarray(p_skip, jnp.float32)
        u = jax.random.bernoulli(key, keep, (batch_size,)).astype(jnp.float32)
        new_state = select(u, candidate, state)
        probability = jnp.broadcast_to(keep, (batch_size,))
        return new_state, Output(cell.output(new_state), u, probability, probability)

    return cell._replace(step=step)
