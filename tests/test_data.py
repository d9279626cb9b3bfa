"""The data generators obey the paper's distributions; the loaders read the standard formats."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from skip_rnn.experiments.data import adding, frequency, imdb, mnist, ucf101
from skip_rnn.experiments.data.base import Batch, epoch_batches
from skip_rnn.experiments.data.sources import DataError, read_idx
from tests.test_training import tiny_config


def test_adding_markers_values_and_targets():
    batch = adding.sample(np.random.default_rng(0), 4000, 50)
    values, markers = batch.inputs[..., 0], batch.inputs[..., 1]
    assert batch.inputs.shape == (4000, 50, 2)
    np.testing.assert_array_equal(markers.sum(1), 2)
    positions = np.argwhere(markers)[:, 1].reshape(-1, 2)
    assert set(positions[:, 0]) == set(range(5))  # uniform over the first 10% ...
    assert set(positions[:, 1]) == set(range(25, 50))  # ... and over the last half
    assert np.abs(np.bincount(positions[:, 0]) / 4000 - 0.2).max() < 0.03
    assert values.min() >= -0.5 and values.max() < 0.5
    np.testing.assert_allclose(batch.targets, (values * markers).sum(1), atol=1e-6)
    assert abs(batch.targets.var() - adding.TARGET_VARIANCE) < 0.01


def test_frequency_periods_phases_and_balance():
    rng = np.random.default_rng(0)
    positive = frequency.sample_periods(rng, 20000, True)
    negative = frequency.sample_periods(rng, 20000, False)
    assert positive.min() >= 5 and positive.max() <= 6
    assert not np.any((negative > 5) & (negative < 6))
    assert negative.min() >= 1 and negative.max() <= 100
    # Uniform over (1, 5) ∪ (6, 100): P(T < 5) = 4 / 98.
    assert abs(np.mean(negative < 5) - 4 / 98) < 0.005
    for ts, length in ((1.0, 100), (0.5, 200)):
        batch = frequency.sample(rng, 64, 100.0, ts)
        assert batch.inputs.shape == (64, length, 1)
        np.testing.assert_array_equal(batch.targets, [1] * 32 + [0] * 32)
        assert np.abs(batch.inputs).max() <= 1.0


def test_epoch_batches_visit_each_example_once_per_epoch():
    data = Batch(np.arange(10)[:, None, None].astype(np.float32), np.arange(10))
    train_batch, steps = epoch_batches(data, 3)
    assert steps == 3
    seen = np.concatenate([train_batch(0, s).targets for s in range(3)])
    assert len(set(seen.tolist())) == 9
    np.testing.assert_array_equal(train_batch(0, 4).targets, train_batch(0, 4).targets)
    assert not np.array_equal(train_batch(0, 0).targets, train_batch(0, 3).targets)
    assert not np.array_equal(train_batch(0, 0).targets, train_batch(1, 0).targets)
    with pytest.raises(DataError, match=r"config.batch_size=11 exceeds the 10 training examples"):
        epoch_batches(data, 11)  # a DataError: train.py says it in one line


def test_mnist_split_and_scale(mnist_dir):
    config = tiny_config("mnist", dir=mnist_dir)
    task = mnist.load(config)
    assert task.eval_sets["validation"].num_examples == 4
    assert task.eval_sets["test"].num_examples == 10
    x = task.train_batch(0, 0).inputs
    assert x.shape == (8, 784, 1) and 0.0 <= x.min() and x.max() <= 1.0


def test_idx_reader_refuses_bad_magic_and_truncated_files(tmp_path):
    path = tmp_path / "bad-idx1-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"\x00\x00\x09\x01" + (5).to_bytes(4, "big") + bytes(5))
    with pytest.raises(DataError, match="magic"):
        read_idx(str(path))
    with gzip.open(path, "wb") as f:
        f.write(b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + bytes(3))
    with pytest.raises(DataError, match="truncated"):
        read_idx(str(path))
    path.write_bytes(b"\x1f\x8b\x08 not really gzip")
    with pytest.raises(DataError, match="corrupt"):
        read_idx(str(path))


def test_imdb_tokens_padding_and_lengths(imdb_csv, tmp_path):
    assert imdb.tokenize("It's GOOD!<br />Bad.") == ["it's", "good", "bad"]
    task = imdb.load(tiny_config("imdb", dir=imdb_csv))
    sizes = [task.eval_sets[s].num_examples for s in ("validation", "test")]
    assert sizes == [6, 6] and task.tokens and task.embedding(0).shape[1] == 6
    batch = task.train_batch(0, 0)
    assert batch.inputs.shape == (8, 12)
    for ids, n in zip(batch.inputs, batch.lengths, strict=True):
        assert np.all(ids[:n] != imdb.PAD) and np.all(ids[n:] == imdb.PAD)
    assert np.abs(task.embedding(0)[2:]).max() <= 0.25
    np.testing.assert_array_equal(task.embedding(0)[imdb.PAD], 0.0)
    assert not np.array_equal(task.embedding(0), task.embedding(1)), "each seed its own draw"
    np.testing.assert_array_equal(task.embedding(1), task.embedding(1))
    bad = tmp_path / "bad.csv"
    bad.write_text("review,sentiment\nfine,1\n")
    with pytest.raises(DataError, match="'text' and 'label'"):
        imdb.read_csv(str(bad))


def test_ucf101_validation_holds_out_whole_groups(ucf_dir):
    task = ucf101.load(tiny_config("ucf101", dir=ucf_dir, validation_fraction=0.2))
    held_out = {ucf101.video_group(p) for p in task.eval_sets["validation"].paths}
    assert held_out and held_out < {"08", "09", "10", "11"}
    paths = [f"v_{c}_g{g:02d}_c0{k}.npy" for g in range(8, 26) for c in "AB" for k in (1, 2)]
    train, validation = ucf101.split_by_group(paths, 0.1, seed=3)
    groups = np.array([ucf101.video_group(p) for p in paths])
    assert not set(groups[train]) & set(groups[validation])
    assert len(validation) == 4 * 1 and len(train) + len(validation) == len(paths)
    assert ucf101.video_group("x/v_Drumming_g07_c03.npy") == "07"


def test_ucf101_crops_pads_and_refuses_non_finite(ucf_dir, tmp_path):
    task = ucf101.load(tiny_config("ucf101", dir=ucf_dir))
    assert task.num_outputs == 3 and task.input_size == 8
    batch = task.eval_sets["test"].slice(0, 6)
    assert batch.inputs.shape == (6, 10, 8)
    for x, n in zip(batch.inputs, batch.lengths, strict=True):
        assert 3 <= n <= 10 and np.all(x[n:] == 0)
    path = tmp_path / "nan.npy"
    np.save(path, np.array([[0.0, np.nan]], np.float32))
    with pytest.raises(ValueError, match="non-finite"):
        ucf101.Videos([str(path)], np.zeros(1, np.int32), 5).take([0])


class _PreparedBuilder:
    """Stands in for a prepared tfds builder (tfds's own mock_data needs TensorFlow)."""

    def __init__(self, splits):
        self.splits, self.data_dir = splits, "fake"

    def is_prepared(self):
        return True

    def as_dataset(self, split, batch_size):
        assert batch_size == -1
        return self.splits[split]


def test_tfds_sources_read_prepared_datasets(monkeypatch):
    import tensorflow_datasets as tfds

    rng = np.random.default_rng(0)
    datasets = {
        "mnist": {s: {"image": rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8),
                      "label": rng.integers(0, 10, n)} for s, n in (("train", 50), ("test", 7))},
        "imdb_reviews": {s: {"text": np.array([b"good film", b"bad<br />film"] * 20),
                             "label": np.array([1, 0] * 20)} for s in ("train", "test")},
    }
    monkeypatch.setattr(tfds, "builder", lambda name, data_dir=None: _PreparedBuilder(
        datasets[name]))
    monkeypatch.setattr(tfds, "as_numpy", lambda tree: tree)
    task = mnist.load(tiny_config("mnist", source="tfds"))
    assert task.eval_sets["test"].num_examples == 7
    assert task.train_batch(0, 0).inputs.shape == (8, 784, 1)
    task = imdb.load(tiny_config("imdb", source="tfds"))
    assert task.eval_sets["test"].num_examples == 40  # the tfds test split
    assert task.eval_sets["validation"].num_examples == 6  # 15% of train
