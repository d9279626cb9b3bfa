"""Budget losses (§3.2 and §5) that encourage fewer state updates.

Each takes the update gates ``u`` ``[B, T]`` from :func:`skip_rnn.unroll` (their gradient is
straight-through, so these losses train ``W_p`` and ``b_p``) and returns a scalar: the mean
over the batch of a per-sequence cost. :func:`skip_rnn.unroll` sets ``u = 0`` on padded
steps, so padding never counts.
"""

from __future__ import annotations

import jax.numpy as jnp

from skip_rnn.base import Array


def budget_loss(u: Array, cost_per_sample: float | Array) -> Array:
    """Eq. 8, cost per sample: ``mean_b λ·Σ_t u_{b,t}``."""
    return cost_per_sample * jnp.mean(jnp.sum(u, axis=-1))


def l1_budget_loss(u: Array, target_updates: float, weight: float = 1.0) -> Array:
    """``weight · mean_b |Σ_t u_{b,t} − target_updates|`` (§3.2: a target number of updates)."""
    return weight * jnp.mean(jnp.abs(jnp.sum(u, axis=-1) - target_updates))


def l2_budget_loss(u: Array, target_updates: float, weight: float = 1.0) -> Array:
    """``weight · mean_b (Σ_t u_{b,t} − target_updates)²``."""
    return weight * jnp.mean(jnp.square(jnp.sum(u, axis=-1) - target_updates))


def time_weighted_budget_loss(u: Array, cost_per_step: Array) -> Array:
    """``mean_b Σ_t λ_t·u_{b,t}`` with one cost per step, ``cost_per_step`` ``[T]``.

    A cost rising over time (§5: "encourage the network to emit a decision earlier"), e.g.
    :func:`rising_costs`.
    """
    return jnp.mean(jnp.sum(u * cost_per_step, axis=-1))


def rising_costs(num_steps: int, cost_per_sample: float) -> Array:
    """``λ_t = 2λ·t / (T + 1)`` for ``t = 1..T``: rises linearly and averages ``λ``, ``[T]``."""
    steps = jnp.arange(1, num_steps + 1, dtype=jnp.float32)
    return 2.0 * cost_per_sample * steps / (num_steps + 1)
