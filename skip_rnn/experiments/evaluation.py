"""Held-out evaluation of a population, per member: loss, task metric (the localization mAP
for per-frame tasks), state updates, the update gate's mean ``Δũ``, inference FLOPs, and the
paper's "solved" rule where the task has one."""

from __future__ import annotations

import jax
import numpy as np

from skip_rnn._src.base import Params
from skip_rnn.experiments import localization
from skip_rnn.experiments.data import Batch, TaskData


def evaluate(eval_step, params: Params, eval_set, batch_size: int, shard, task: TaskData,
             flops_per_update: float = 0.0, num_eval_frames: int = 100
             ) -> list[dict[str, float]]:
    """Per member: loss, task metric, state updates (mean, std, % of steps), the update gate's
    mean ``Δũ`` over valid steps (``delta_u_mean``: 1 for plain cells) and inference FLOPs
    (the mean over sequences of updates x ``flops_per_update``) on a held-out set. Per-step
    tasks score the localization mAP on ``num_eval_frames`` equally spaced frames a sequence
    (:func:`skip_rnn.experiments.localization.localization_map`)."""
    values: dict[str, list] = {}
    steps = 0
    for start in range(0, eval_set.num_examples, batch_size):
        batch = eval_set.slice(start, start + batch_size)
        n = batch.num_examples
        padded = Batch(*(None if a is None else _pad(a, batch_size) for a in batch))
        outputs = jax.device_get(eval_step(params, shard(padded), start // batch_size))
        outputs = {k: v[:, :n] for k, v in outputs.items()}
        lengths = batch.lengths if batch.lengths is not None else batch.inputs.shape[1]
        lengths = np.broadcast_to(lengths, (n,))
        if task.per_step:  # keep the sampled frames only: [M, n, F, C]
            frames = localization.sample_frames(lengths, num_eval_frames)[..., None]
            outputs["scores"] = np.take_along_axis(outputs["scores"], frames[None], axis=2)
            outputs["labels"] = np.take_along_axis(batch.targets, frames, axis=1)[None]
        for k, v in outputs.items():
            values.setdefault(k, []).append(v)
        steps += int(np.sum(lengths))
    values = {k: np.concatenate(v, axis=1) for k, v in values.items()}
    results = []
    for m in range(len(values["loss"])):
        if task.per_step:
            scores = values["scores"][m]
            metric = localization.localization_map(
                scores, values["labels"][0], np.full(len(scores), num_eval_frames),
                num_eval_frames)
        else:
            metric = float(np.mean(values["metric"][m]))
        weights = values["weight"][m] if "weight" in values else None  # per-step: by frames
        metrics = {
            "loss": float(np.average(values["loss"][m], weights=weights)),
            "metric": float(metric),
            "updates_mean": float(np.mean(values["updates"][m])),
            "updates_std": float(np.std(values["updates"][m])),
            "updates_percent": 100.0 * float(np.sum(values["updates"][m])) / steps,
            "delta_u_mean": float(np.sum(values["delta_u"][m])) / steps,
            "inference_flops": flops_per_update * float(np.mean(values["updates"][m])),
        }
        if task.solved is not None:
            metrics["solved"] = bool(task.solved(metrics["metric"]))
        results.append(metrics)
    return results


def _pad(array: np.ndarray, size: int) -> np.ndarray:
    """Pads the batch axis to ``size`` by repeating the last row (results are cut off)."""
    return np.concatenate([array, np.repeat(array[-1:], size - len(array), 0)])
