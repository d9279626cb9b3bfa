"""Charades' temporal localization metric (paper §4.3): per-frame mAP on equally spaced frames.

The official evaluation, ``Charades_v1_localize.m`` (in ``Charades.zip``, from
https://prior.allenai.org/projects/charades; adapted from THUMOS'15), scores
``frames_per_video = 25`` timepoints of each video, ``(j - 1) / 25 · length`` seconds for
``j = 1..25``; the paper scores 100 instead. Every sampled frame of every video is one sample,
and for each class:

    AP = (1 / #positives) · Σ_{positive samples i} precision at the rank of i,

ranking all samples by score, descending; ties keep the samples' order (MATLAB's stable
``sort``; the official order is video by video, frame by frame, as here). The mAP is the mean
of the classes' APs.

Here, with per-frame scores and labels at 6 fps: sample ``j = 0..F-1`` of a video with ``L``
valid frames is frame ``⌊j·L/F⌋`` (:func:`sample_frames`), the frame at or just before the
official timepoint ``j/F · length`` (``L ≈ 6·length``); short videos repeat frames, so every
video counts ``F`` samples, as in the official evaluation. Two differences, both small: a
sample's ground truth is its frame's labels, where the official one is the annotation at the
exact timepoint (they differ only within 1/6 s of an action's boundary); and the mean runs over
the classes with at least one positive sample (the official mean over all 157 classes is NaN
if one has none; on the official test set every class has positives).
"""

from __future__ import annotations

import numpy as np


def sample_frames(lengths: np.ndarray, num_frames: int = 100) -> np.ndarray:
    """Indices ``[N, num_frames]`` of equally spaced frames within each video's ``lengths[n]``
    valid frames: ``⌊j·L/F⌋`` for ``j = 0..F-1`` (repeats when ``L < F``).

    Example:
      >>> sample_frames(np.array([7, 2]), 4).tolist()
      [[0, 1, 3, 5], [0, 0, 1, 1]]
    """
    lengths = np.asarray(lengths, np.int64)
    if lengths.min(initial=1) < 1:
        raise ValueError(f"Every video needs at least one valid frame, got lengths {lengths}.")
    return np.arange(num_frames) * lengths[:, None] // num_frames


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """THUMOS' AP of one class over samples ``[S]``: the mean over the positives of the
    precision at their rank (score descending, ties in sample order); NaN without positives."""
    hits = np.asarray(labels)[np.argsort(-np.asarray(scores), kind="stable")] > 0
    if not hits.any():
        return float("nan")
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].mean())


def per_class_ap(scores: np.ndarray, targets: np.ndarray, lengths: np.ndarray,
                 num_frames: int = 100) -> np.ndarray:
    """AP ``[C]`` of each class over ``num_frames`` equally spaced frames of every video.

    Args:
      scores: ``[N, T, C]`` per-frame scores (any monotone form: logits or probabilities).
      targets: ``[N, T, C]`` per-frame multi-hot labels.
      lengths: ``[N]`` valid frames of each video (``1 <= lengths <= T``).
      num_frames: frames sampled per video (the paper: 100; the official evaluation: 25).

    Returns:
      ``[C]`` APs; NaN for a class without a positive sample.
    """
    frames = sample_frames(lengths, num_frames)
    videos = np.arange(len(frames))[:, None]
    num_classes = scores.shape[-1]
    sampled_scores = np.asarray(scores)[videos, frames].reshape(-1, num_classes)
    sampled_targets = np.asarray(targets)[videos, frames].reshape(-1, num_classes)
    return np.array([average_precision(sampled_scores[:, c], sampled_targets[:, c])
                     for c in range(num_classes)])


def localization_map(scores: np.ndarray, targets: np.ndarray, lengths: np.ndarray,
                     num_frames: int = 100) -> float:
    """Mean over the classes with a positive sample of :func:`per_class_ap` (shapes there);
    NaN if no class has one."""
    ap = per_class_ap(scores, targets, lengths, num_frames)
    ap = ap[~np.isnan(ap)]
    return float(ap.mean()) if len(ap) else float("nan")
