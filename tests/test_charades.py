"""Charades (§4.3): the official layout is read, labelled per frame at 6 fps and cached; the
localization mAP agrees with hand-computed values."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from skip_rnn.experiments import data, localization
from skip_rnn.experiments.data import charades
from skip_rnn.experiments.data.sources import DataError
from tests.test_training import tiny_config


def test_actions_become_frame_labels_at_6_fps():
    actions = charades.parse_actions("c002 0.00 0.50;c156 0.40 1.00")
    np.testing.assert_array_equal(actions, [[2, 0.0, 0.5], [156, 0.4, 1.0]])
    assert charades.parse_actions("").shape == (0, 3)
    labels = charades.frame_labels(actions, 8)
    assert labels.shape == (8, 157) and labels.sum() == 8
    # Frame k is at k/6 s: 0, .17, .33, .5, .67, .83, 1, 1.17. c002 holds at t <= .5 (ends
    # included, as Charades_v1_localize.m): frames 0-3; c156 at .4 <= t <= 1: frames 3-6.
    np.testing.assert_array_equal(np.flatnonzero(labels[:, 2]), [0, 1, 2, 3])
    np.testing.assert_array_equal(np.flatnonzero(labels[:, 156]), [3, 4, 5, 6])
    with pytest.raises(ValueError, match="cNNN"):
        charades.parse_actions("c157 0.0 1.0")


def test_loader_reads_the_official_layout(charades_dir, tmp_path):
    task = data.load(tiny_config("charades", dir=charades_dir, cache_dir=str(tmp_path)))
    assert task.per_step and task.num_outputs == 157 and task.input_size == 8
    assert task.eval_sets["validation"].num_examples == 1  # 5% of 10, at least one
    assert task.steps_per_epoch == 1
    batch = task.eval_sets["test"].slice(0, 3)
    assert batch.inputs.shape == (3, 10, 8) and batch.targets.shape == (3, 10, 157)
    np.testing.assert_array_equal(batch.lengths, [7, 10, 3])  # TEST2's 12 frames cropped
    # TEST1 is video 10 of the fixture: feature [k, j] = 1000 + k + j/10, frames in order.
    np.testing.assert_allclose(batch.inputs[0, :7], 1000 + np.arange(7)[:, None]
                               + np.arange(8) / 10, rtol=1e-6)
    assert np.all(batch.inputs[0, 7:] == 0) and np.all(batch.targets[0, 7:] == 0)
    np.testing.assert_array_equal(np.flatnonzero(batch.targets[0, :, 2]), [0, 1, 2, 3])
    np.testing.assert_array_equal(np.flatnonzero(batch.targets[0, :, 156]), [3, 4, 5, 6])
    assert batch.targets[0].sum() == 8
    # TEST2: c000 over 1-1.5 s is frames 6-9 (6/6 = 1, 9/6 = 1.5); TEST3 has no action.
    np.testing.assert_array_equal(np.flatnonzero(batch.targets[1, :, 0]), [6, 7, 8, 9])
    assert batch.targets[1].sum() == 4 and batch.targets[2].sum() == 0
    train = task.train_batch(0, 0)
    assert train.inputs.shape == (8, 10, 8) and train.targets.shape == (8, 10, 157)
    frame = np.arange(10)
    for targets, n in zip(train.targets, train.lengths, strict=True):
        # c010 over 0.3-9 s: frames 2 (at 0.33 s) to the video's end; nothing on the padding.
        np.testing.assert_array_equal(targets[:, 10], (frame >= 2) & (frame < n))
        assert np.all(targets[n:] == 0)


def test_features_are_cached_on_first_read_and_read_from_the_cache_after(charades_dir,
                                                                         tmp_path):
    config = tiny_config("charades", dir=charades_dir, cache_dir=str(tmp_path))
    test = charades.load(config).eval_sets["test"]
    path = tmp_path / "TEST3.npy"
    assert not path.exists()
    first = test.take([2]).inputs[0, :3]
    np.testing.assert_allclose(np.load(path), first, rtol=1e-6)
    np.save(path, np.full((3, 8), 7.0, np.float32))
    np.testing.assert_array_equal(test.take([2]).inputs[0, :3], 7.0)
    assert sorted(os.listdir(tmp_path)) == ["TEST3.npy", "TR000.npy"]  # no partial files


def test_missing_or_malformed_data_fails_fast_with_how_to_get_it(charades_dir, tmp_path):
    with pytest.raises(DataError, match="prior.allenai.org"):
        charades.load(tiny_config("charades", dir=str(tmp_path / "absent")))
    for name in ("Charades_v1_train.csv", "Charades_v1_test.csv"):
        shutil.copy(os.path.join(charades_dir, name), tmp_path)
    with pytest.raises(DataError, match="10 videos listed in Charades_v1_train.csv have no"):
        charades.load(tiny_config("charades", dir=str(tmp_path)))
    video = tmp_path / "V1"
    video.mkdir()
    for frame in (1, 9):
        (video / f"V1-{frame:06d}.txt").write_text("1 2\n")
    with pytest.raises(DataError, match="no gaps"):
        charades.read_features(str(video))


def test_sample_frames_spaces_frames_like_the_official_timepoints():
    # floor(j·L/F): L = 7, F = 4: 0, 7/4, 14/4, 21/4 -> 0, 1, 3, 5; L = 2 repeats frames.
    np.testing.assert_array_equal(localization.sample_frames(np.array([7, 2, 4]), 4),
                                  [[0, 1, 3, 5], [0, 0, 1, 1], [0, 1, 2, 3]])
    # A 30 s video has 180 frames at 6 fps; official timepoint j·30/25 s -> frame 6·j·30/25.
    np.testing.assert_array_equal(localization.sample_frames(np.array([180]), 25)[0],
                                  np.floor(6 * np.arange(25) * 30 / 25).astype(int))


def test_average_precision_ranks_ties_in_sample_order():
    assert localization.average_precision(np.array([0.5, 0.5]), np.array([0, 1])) == 0.5
    assert localization.average_precision(np.array([0.5, 0.5]), np.array([1, 0])) == 1.0
    assert np.isnan(localization.average_precision(np.array([0.5]), np.array([0])))


def test_localization_map_by_hand():
    # Two videos of T = 4 padded frames, C = 3 classes, lengths 4 and 2, F = 2 frames each:
    # video 0 samples frames floor(j·4/2) = 0, 2; video 1 floor(j·2/2) = 0, 1.
    scores = np.zeros((2, 4, 3))
    targets = np.zeros((2, 4, 3))
    scores[0, :, 0], targets[0, :, 0] = [0.9, 0.99, 0.2, 0.0], [1, 1, 0, 0]
    scores[1, :, 0], targets[1, :, 0] = [0.6, 0.4, 0.0, 9.0], [0, 1, 0, 1]
    scores[0, :, 1], targets[0, :, 1] = [0.1, 0.0, 0.8, 0.0], [0, 1, 0, 0]
    scores[1, :, 1], targets[1, :, 1] = [0.3, 0.7, 0.0, 0.0], [1, 0, 0, 0]
    targets[0, 1, 2] = targets[1, 3, 2] = 1  # class 2: positive only in unsampled frames
    # Samples (v0 f0, v0 f2, v1 f0, v1 f1). Frame 1 of video 0 and the padding are not read.
    # Class 0: scores .9 .2 .6 .4, labels 1 0 0 1: ranked .9+ .6- .4+ .2-:
    #   AP = (1/1 + 2/3) / 2 = 5/6.
    # Class 1: scores .1 .8 .3 .7, labels 0 0 1 0: ranked .8- .7- .3+ .1-: AP = (1/3) / 1.
    # Class 2: no positive sample: left out. mAP = (5/6 + 1/3) / 2 = 7/12.
    lengths = np.array([4, 2])
    ap = localization.per_class_ap(scores, targets, lengths, num_frames=2)
    np.testing.assert_allclose(ap[:2], [5 / 6, 1 / 3])
    assert np.isnan(ap[2])
    assert localization.localization_map(scores, targets, lengths, num_frames=2) == \
        pytest.approx(7 / 12)
    assert np.isnan(localization.localization_map(scores, 0 * targets, lengths, 2))


def test_per_step_loss_averages_over_valid_frames_only():
    import jax.numpy as jnp

    from skip_rnn.experiments import losses

    logits = jnp.zeros((2, 4, 3))
    targets = jnp.zeros((2, 4, 3)).at[0, 0, 1].set(1.0)
    lengths = jnp.array([4, 2])
    out = losses.per_step_metrics(logits, targets, lengths)
    np.testing.assert_allclose(out["loss"], [np.log(2), np.log(2)], rtol=1e-6)  # σ(0) = 1/2
    np.testing.assert_array_equal(out["weight"], [4, 2])
    poisoned = logits.at[1, 2:].set(50.0)  # padding: any prediction costs nothing
    np.testing.assert_array_equal(losses.per_step_metrics(poisoned, targets, lengths)["loss"],
                                  out["loss"])
    confident = logits.at[0, 0, 1].set(30.0)  # the one positive, predicted: less loss
    assert losses.per_step_metrics(confident, targets, lengths)["loss"][0] < out["loss"][0]
