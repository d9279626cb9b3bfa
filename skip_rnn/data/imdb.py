"""IMDB sentiment (§4.4): reviews as word ids ``[B, T]``, cropped or padded to ``T`` words.

Padding is handled with ``lengths`` (padded steps never update nor count). Tokens: lower-case
words (``<br />`` removed); vocabulary: the ``vocab_size - 2`` most frequent training words
(id 0 pads, id 1 is out-of-vocabulary). Sources:

- ``"csv"``: a ``text,label`` CSV (optionally gzipped) of labelled reviews, split with a fixed
  seed into train / validation / test (``config.data.split``: fractions). The 25,000-review
  train file is *not* the paper's test split: results on it must say so.
- ``"tfds"``: ``imdb_reviews`` (train and test); 15% of train is held out for validation.

The embedding starts from a word2vec binary file when ``config.data.word2vec`` names one,
else ~ U(-0.25, 0.25) (§4.4), drawn from each population member's own seed.
"""

from __future__ import annotations

import collections
import csv
import functools
import gzip
import os
import re

import ml_collections
import numpy as np

from skip_rnn.data.base import Batch, TaskData, epoch_batches
from skip_rnn.data.sources import DataError, tfds_arrays

PAD, OOV = 0, 1
HOW_TO = ("Set --config.data.dir to a CSV file with columns text,label (gzipped or not), or "
          "use --config.data.source=tfds.")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokenize(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("<br />", " "))


def read_csv(path: str | None) -> tuple[list[str], np.ndarray]:
    if not path or not os.path.isfile(path):
        raise DataError(f"config.data.dir={path!r} is not a file. {HOW_TO}")
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read it as CSV ({e}).") from e
    if not rows or not {"text", "label"} <= set(rows[0]):
        columns = sorted(rows[0]) if rows else []
        raise DataError(f"{path}: needs the columns 'text' and 'label', has {columns}.")
    labels = np.array([int(r["label"]) for r in rows], np.int32)
    if not set(np.unique(labels)) <= {0, 1}:
        raise DataError(f"{path}: labels must be 0 or 1, got {sorted(set(labels.tolist()))}.")
    return [r["text"] for r in rows], labels


def build_vocabulary(texts: list[list[str]], vocab_size: int) -> dict[str, int]:
    counts = collections.Counter(w for words in texts for w in words)
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: vocab_size - 2]
    return {w: i + 2 for i, (w, _) in enumerate(top)}


def encode(texts: list[list[str]], labels: np.ndarray, vocab: dict[str, int],
           seq_length: int) -> Batch:
    ids = np.full((len(texts), seq_length), PAD, np.int32)
    lengths = np.zeros(len(texts), np.int32)
    for i, words in enumerate(texts):
        row = [vocab.get(w, OOV) for w in words[:seq_length]]
        ids[i, : len(row)] = row
        lengths[i] = len(row)
    return Batch(ids, labels, lengths)


def initial_embedding(known: dict[int, np.ndarray], vocab_size: int, dim: int, seed: int
                      ) -> np.ndarray:
    """``[vocab_size, dim]``: the ``known`` rows (word id -> vector), the others drawn from
    U(-0.25, 0.25) with ``seed``; the padding row is 0."""
    table = np.random.default_rng(seed).uniform(-0.25, 0.25, (vocab_size, dim))
    table = table.astype(np.float32)
    table[PAD] = 0.0
    for index, vector in known.items():
        table[index] = vector
    return table


def read_word2vec(path: str, vocab: dict[str, int], dim: int) -> dict[int, np.ndarray]:
    """The vectors of a word2vec binary file for the words of ``vocab``: word id -> ``[dim]``."""
    known = {}
    if not path:
        return known
    with open(path, "rb") as f:
        count, file_dim = map(int, f.readline().split())
        if file_dim != dim:
            raise DataError(f"{path}: vectors have {file_dim} dims, config.model.embedding_size "
                            f"is {dim}.")
        for _ in range(count):
            word = bytearray()
            while (ch := f.read(1)) not in (b" ", b""):
                if ch != b"\n":
                    word.extend(ch)
            vector = np.frombuffer(f.read(4 * dim), np.float32)
            if (index := vocab.get(word.decode("utf-8", "ignore"))) is not None:
                known[index] = vector
    return known


def _split(n: int, fractions, seed: int) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    bounds = np.cumsum([int(round(f * n)) for f in fractions[:-1]])
    return np.split(order, bounds)


def load(config: ml_collections.ConfigDict) -> TaskData:
    d = config.data
    if d.source == "csv":
        texts, labels = read_csv(d.dir)
        parts = _split(len(texts), d.split, d.split_seed)
    elif d.source == "tfds":
        arrays = [tfds_arrays("imdb_reviews", s, d.dir, d.download) for s in ("train", "test")]
        texts = [t.decode("utf-8") for a in arrays for t in a["text"]]
        labels = np.concatenate([a["label"] for a in arrays]).astype(np.int32)
        num_train = len(arrays[0]["label"])
        train, validation = _split(num_train, (0.85, 0.15), d.split_seed)
        parts = [train, validation, np.arange(num_train, len(texts))]
    else:
        raise ValueError(f"config.data.source must be 'csv' or 'tfds', got {d.source!r}.")
    words = [tokenize(t) for t in texts]
    vocab = build_vocabulary([words[i] for i in parts[0]], d.vocab_size)
    train, validation, test = (
        encode([words[i] for i in p], labels[p], vocab, d.seq_length) for p in parts
    )
    train_batch, steps_per_epoch = epoch_batches(train, config.batch_size)
    known = read_word2vec(d.word2vec, vocab, config.model.embedding_size)
    return TaskData(
        train_batch=train_batch,
        eval_sets={"validation": validation, "test": test},
        input_size=len(vocab) + 2,
        num_outputs=2,
        steps_per_epoch=steps_per_epoch,
        tokens=True,
        embedding=functools.partial(initial_embedding, known, len(vocab) + 2,
                                    config.model.embedding_size),
    )



