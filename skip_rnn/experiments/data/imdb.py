"""IMDB sentiment (§4.4): reviews as word ids ``[B, T]``, cropped or padded to ``T`` words.

Padding is handled with ``lengths`` (padded steps never update nor count). Tokens: lower-case
words (``<br />`` removed); vocabulary: the ``vocab_size - 2`` most frequent training words
(id 0 pads, id 1 is out-of-vocabulary). Sources:

- ``"aclimdb"`` (the paper's data): the Large Movie Review Dataset (Maas et al. 2011) as
  published, ``aclImdb_v1.tar.gz``: its ``train/{pos,neg}`` (25,000 reviews; 15% held out for
  validation with a fixed seed, as the paper) and ``test/{pos,neg}`` (the 25,000 test
  reviews). Read from ``config.data.dir/aclImdb``; when absent, the archive is unpacked there
  (downloaded first from ``config.data.url`` and checked against its published SHA-256 when it
  is missing and ``config.data.download``).
- ``"csv"``: a ``text,label`` CSV (optionally gzipped) of labelled reviews, split with a fixed
  seed into train / validation / test (``config.data.split``: fractions). The 25,000-review
  train file is *not* the paper's test split: results on it must say so.
- ``"tfds"``: ``imdb_reviews`` (the same train and test), 15% of train held out likewise.

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

from skip_rnn.experiments.data.base import Batch, TaskData, epoch_batches, seeded_split
from skip_rnn.experiments.data.download import extract_tar, fetch
from skip_rnn.experiments.data.sources import DataError, tfds_arrays

PAD, OOV = 0, 1
VALIDATION_FRACTION = 0.15  # of the train split (aclimdb, tfds), as the paper
URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
# SHA-256 of aclImdb_v1.tar.gz (84,125,825 bytes) as published in tensorflow-datasets'
# datasets/imdb_reviews/checksums.tsv.
SHA256 = "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"
HOW_TO = ("Set --config.data.dir to a CSV file with columns text,label (gzipped or not), or "
          "use --config.data.source=aclimdb (the default) or tfds.")
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


def how_to(d: ml_collections.ConfigDict) -> str:
    return (f"Put aclImdb_v1.tar.gz (from {d.url}), or the aclImdb folder it holds, in "
            f"{d.dir!r}, or set --config.data.dir to a folder holding one, or use "
            "--config.data.source=csv (a text,label CSV) or tfds.")


def acl_imdb_root(d: ml_collections.ConfigDict) -> str:
    """``d.dir/aclImdb``; unpacked from ``d.dir/aclImdb_v1.tar.gz`` (downloaded from ``d.url``
    when missing and ``d.download``) when it is absent."""
    if os.path.isfile(d.dir):
        raise DataError(f"config.data.dir={d.dir!r} is a file; config.data.source='aclimdb' "
                        "needs a folder. For a text,label CSV, add --config.data.source=csv.")
    root = os.path.join(d.dir, "aclImdb")
    if os.path.isdir(root):
        return root
    archive = os.path.join(d.dir, os.path.basename(URL))
    if not os.path.isfile(archive):
        if not d.download:
            raise DataError(f"config.data.dir={d.dir!r} has neither aclImdb/ nor "
                            f"{os.path.basename(URL)} and config.data.download is False. "
                            f"{how_to(d)}")
        fetch(d.url, SHA256, archive, how_to(d))
    extract_tar(archive, d.dir)
    if not os.path.isdir(root):
        raise DataError(f"{archive} holds no aclImdb folder: it is not aclImdb_v1.tar.gz. "
                        f"{how_to(d)}")
    return root


def read_acl_imdb(root: str, split: str) -> tuple[list[str], np.ndarray]:
    """The reviews of ``root/split/{neg,pos}/*.txt`` (sorted by name) and their labels, 1 for
    positive."""
    texts, labels = [], []
    for label, sentiment in enumerate(("neg", "pos")):
        folder = os.path.join(root, split, sentiment)
        if not os.path.isdir(folder):
            raise DataError(f"{folder} is missing: {root} is not the aclImdb layout "
                            "(train|test / pos|neg / *.txt); delete it and run again.")
        names = sorted(n for n in os.listdir(folder) if n.endswith(".txt"))
        for name in names:
            # errors="replace": the tokenizer keeps ASCII letters and digits only.
            with open(os.path.join(folder, name), encoding="utf-8", errors="replace") as f:
                texts.append(f.read())
        labels += [label] * len(names)
    return texts, np.array(labels, np.int32)


def tfds_reviews(split: str, data_dir: str) -> tuple[list[str], np.ndarray]:
    arrays = tfds_arrays("imdb_reviews", split, data_dir)
    return [t.decode("utf-8") for t in arrays["text"]], arrays["label"].astype(np.int32)


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


def read_splits(d: ml_collections.ConfigDict) -> tuple[list[str], np.ndarray, list[np.ndarray]]:
    """All texts, their labels, and the indices of train, validation and test."""
    if d.source == "csv":
        texts, labels = read_csv(d.dir)
        return texts, labels, seeded_split(np.ones(len(texts), int), d.split, d.split_seed)
    if d.source == "aclimdb":
        root = acl_imdb_root(d)
        splits = [read_acl_imdb(root, s) for s in ("train", "test")]
    elif d.source == "tfds":
        splits = [tfds_reviews(s, d.dir) for s in ("train", "test")]
    else:
        raise ValueError(f"config.data.source must be 'aclimdb', 'csv' or 'tfds', got "
                         f"{d.source!r}.")
    (train, train_labels), (test, test_labels) = splits
    held_out = seeded_split(np.ones(len(train), int),
                            (1 - VALIDATION_FRACTION, VALIDATION_FRACTION), d.split_seed)
    parts = [*held_out, np.arange(len(train), len(train) + len(test))]
    return train + test, np.concatenate([train_labels, test_labels]), parts


def load(config: ml_collections.ConfigDict) -> TaskData:
    d = config.data
    texts, labels, parts = read_splits(d)
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



