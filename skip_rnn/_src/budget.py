"""Budget losses (§3.2 and §5) that encourage fewer state updates.

Each takes the update gates ``u`` ``[B, T]`` from :func:`skip_rnn.unroll` (their gradient is
straight-through, so these losses train ``W_p`` and ``b_p``) and returns a scalar: the mean
over the batch of a per-sequence cost. :func:`skip_rnn.unroll` sets ``u = 0`` on padded
steps, so padding never counts. Costs, weights and targets are non-negative: a concrete negative
one (it would reward updates) raises ``ValueError``; traced ones are not checked.
"""

from __future__ import annotations

import jax.numpy as jnp

from skip_rnn._src.base import Array, check_number


def budget_loss(u: Array, cost_per_sample: float | Array) -> Array:
    """Eq. 8, cost per sample: ``mean_b λ·Σ_t u_{b,t}``."""
    check_number("budget_loss", "cost_per_sample", cost_per_sample, low=0)
    return cost_per_sample * jnp.mean(jnp.sum(u, axis=-1))


def l1_budget_loss(u: Array, target_updates: float, weight: float = 1.0) -> Array:
    """``weight · mean_b |Σ_t u_{b,t} − target_updates|`` (§3.2: a target number of updates)."""
    _check_target("l1_budget_loss", target_updates, weight)
    return weight * jnp.mean(jnp.abs(jnp.sum(u, axis=-1) - target_updates))


def l2_budget_loss(u: Array, target_updates: float, weight: float = 1.0) -> Array:
    """``weight · mean_b (Σ_t u_{b,t} − target_updates)²``."""
    _check_target("l2_budget_loss", target_updates, weight)
    return weight * jnp.mean(jnp.square(jnp.sum(u, axis=-1) - target_updates))


def time_weighted_budget_loss(u: Array, cost_per_step: Array) -> Array:
    """``mean_b Σ_t λ_t·u_{b,t}`` with one cost per step, ``cost_per_step`` ``[T]``.

    A cost rising over time (§5: "encourage the network to emit a decision earlier"), e.g.
    :func:`rising_costs`.
    """
    check_number("time_weighted_budget_loss", "cost_per_step", cost_per_step, low=0)
    cost_per_step = jnp.asarray(cost_per_step)
    if jnp.shape(cost_per_step) != jnp.shape(u)[-1:]:
        raise ValueError(f"time_weighted_budget_loss: `cost_per_step` must have shape [T] = "
                         f"{jnp.shape(u)[-1:]} (u is [B, T] = {jnp.shape(u)}), got "
                         f"{jnp.shape(cost_per_step)}")
    return jnp.mean(jnp.sum(u * cost_per_step, axis=-1))


def rising_costs(num_steps: int, cost_per_sample: float) -> Array:
    """``λ_t = 2λ·t / (T + 1)`` for ``t = 1..T``: rises linearly and averages ``λ``, ``[T]``."""
    check_number("rising_costs", "num_steps", num_steps, integer=True, low=0)
    check_number("rising_costs", "cost_per_sample", cost_per_sample, low=0)
    steps = jnp.arange(1, num_steps + 1, dtype=jnp.float32)
    return 2.0 * cost_per_sample * steps / (num_steps + 1)


def _check_target(caller: str, target_updates: float | Array, weight: float | Array) -> None:
    check_number(caller, "target_updates", target_updates, low=0)
    check_number(caller, "weight", weight, low=0)
