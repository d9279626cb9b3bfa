"""Downloads are verified before use, retried once when damaged, and fail fast offline;
archives never write outside their folder; MNIST and IMDB come from their standard files."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import socket
import tarfile
import time

import numpy as np
import pytest

from configs import imdb as imdb_config
from configs import mnist as mnist_config
from skip_rnn.experiments.data import imdb, mnist
from skip_rnn.experiments.data.download import cache_dir, extract_tar, fetch
from skip_rnn.experiments.data.sources import DataError
from tests.conftest import write_idx

DATA = bytes(range(256)) * 40


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tree(path) -> list[str]:
    """Every path below ``path``, relative, sorted."""
    return sorted(os.path.relpath(os.path.join(root, n), path)
                  for root, dirs, files in os.walk(path) for n in dirs + files)


def test_fetch_verifies_then_renames(file_server, tmp_path):
    file_server.files["/a.bin"] = DATA
    destination = tmp_path / "cache" / "a.bin"
    assert fetch(file_server.url + "/a.bin", sha256(DATA), str(destination)) == str(destination)
    assert destination.read_bytes() == DATA
    assert tree(tmp_path / "cache") == ["a.bin"] and file_server.requests == ["/a.bin"]


@pytest.mark.parametrize("damage", ["corrupt", "truncate"])
def test_a_damaged_download_is_retried_once(damage, file_server, tmp_path):
    file_server.files["/a.bin"] = DATA
    file_server.damage = [damage]
    fetch(file_server.url + "/a.bin", sha256(DATA), str(tmp_path / "a.bin"))
    assert (tmp_path / "a.bin").read_bytes() == DATA and len(file_server.requests) == 2


@pytest.mark.parametrize("damage", ["corrupt", "truncate"])
def test_a_download_damaged_twice_is_deleted_and_refused(damage, file_server, tmp_path):
    file_server.files["/a.bin"] = DATA
    file_server.damage = [damage] * 3
    url, destination = file_server.url + "/a.bin", str(tmp_path / "a.bin")
    with pytest.raises(DataError) as error:
        fetch(url, sha256(DATA), destination)
    message = str(error.value)
    assert url in message and sha256(DATA) in message and destination in message
    got = DATA[: len(DATA) // 2] if damage == "truncate" else bytes([DATA[0] ^ 0xFF]) + DATA[1:]
    assert f"got {len(got)} bytes with sha256 {sha256(got)}" in message
    assert tree(tmp_path) == [] and len(file_server.requests) == 2


def _refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mnist_config(directory, url: str):
    config = mnist_config.get_config()
    config.batch_size = 8
    config.data.dir, config.data.url = str(directory), url
    return config


def test_mnist_offline_fails_fast_saying_where_to_put_the_files(tmp_path):
    config = _mnist_config(tmp_path / "cache", f"http://127.0.0.1:{_refused_port()}/mnist/")
    start = time.time()
    with pytest.raises(DataError, match="Cannot download") as error:
        mnist.load(config)
    assert time.time() - start < 5
    assert str(tmp_path / "cache") in str(error.value)
    assert all(name in str(error.value) for name in mnist.CHECKSUMS)
    assert "shared" not in str(error.value) and "mnist-dir" not in str(error.value)
    assert tree(tmp_path / "cache") == []
    config.data.download = False
    with pytest.raises(DataError, match="download is False.*Put the four MNIST IDX files"):
        mnist.load(config)


def test_mnist_downloads_the_four_files_once(file_server, tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 40), ("t10k", 10)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    served = {name: (tmp_path / name).read_bytes() for name in mnist.CHECKSUMS}
    file_server.files.update({f"/mnist/{name}": data for name, data in served.items()})
    monkeypatch.setattr(mnist, "CHECKSUMS", {name: sha256(d) for name, d in served.items()})
    config = _mnist_config(tmp_path / "cache", file_server.url + "/mnist/")
    task = mnist.load(config)
    assert task.eval_sets["test"].num_examples == 10
    assert task.train_batch(0, 0).inputs.shape == (8, 784, 1)
    assert tree(tmp_path / "cache") == sorted(served) and len(file_server.requests) == 4
    mnist.load(config)
    assert len(file_server.requests) == 4, "files present are not downloaded again"


def test_cache_dir_honours_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert mnist_config.get_config().data.dir == str(tmp_path / "skip_rnn" / "mnist")
    assert imdb_config.get_config().data.dir == cache_dir("imdb")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir("mnist") == os.path.expanduser("~/.cache/skip_rnn/mnist")


def _crafted_tar(path, tmp_path, kind: str) -> str:
    """A tar holding a harmless file, then one member of ``kind`` aimed outside ``tmp_path/x``."""
    target = tmp_path / "outside.txt"
    members = {"dotdot": tarfile.TarInfo("aclImdb/../../outside.txt"),
               "absolute": tarfile.TarInfo(str(target)),
               "symlink": tarfile.TarInfo("aclImdb/link"),
               "hardlink": tarfile.TarInfo("aclImdb/hard")}
    bad = members[kind]
    if kind in ("symlink", "hardlink"):
        bad.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
        bad.linkname = str(target)
    with tarfile.open(path, "w:gz") as tar:
        for info, data in ((tarfile.TarInfo("aclImdb/ok.txt"), b"ok"), (bad, b"pwned")):
            info.size = 0 if info.islnk() or info.issym() else len(data)
            tar.addfile(info, io.BytesIO(data))
    with tarfile.open(path) as tar:
        assert tar.getnames()[1] == bad.name, "the crafted name survives in the archive"
    return str(path)


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "hardlink"])
def test_extract_tar_refuses_crafted_archives_and_writes_nothing(kind, tmp_path):
    archive = _crafted_tar(tmp_path / "evil.tar.gz", tmp_path, kind)
    before = tree(tmp_path)
    with pytest.raises(DataError, match="refused, nothing extracted.*outside its folder"):
        extract_tar(archive, str(tmp_path / "x"))
    assert tree(tmp_path) == before


def test_extract_tar_refuses_a_corrupt_archive(tmp_path, acl_imdb_tar):
    data = open(acl_imdb_tar, "rb").read()
    for i, damaged in enumerate([data[: len(data) // 2], b"not a tar at all", gzip.compress(
            b"\xff" * 2048)]):
        path = tmp_path / f"{i}.tar.gz"
        path.write_bytes(damaged)
        with pytest.raises(DataError, match="corrupt"):
            extract_tar(str(path), str(tmp_path / "x"))
    assert not (tmp_path / "x" / "aclImdb").exists()


def _imdb_config(directory, url: str):
    config = imdb_config.get_config()
    config.batch_size, config.model.embedding_size = 8, 6
    config.data.update(dir=str(directory), url=url, seq_length=12, vocab_size=50)
    return config


def test_acl_imdb_is_downloaded_unpacked_and_split_as_published(file_server, tmp_path,
                                                                monkeypatch, acl_imdb_tar):
    data = open(acl_imdb_tar, "rb").read()
    file_server.files["/aclImdb_v1.tar.gz"] = data
    monkeypatch.setattr(imdb, "SHA256", sha256(data))
    config = _imdb_config(tmp_path / "cache", file_server.url + "/aclImdb_v1.tar.gz")
    task = imdb.load(config)
    test, validation = task.eval_sets["test"], task.eval_sets["validation"]
    assert test.num_examples == 6 and test.targets.sum() == 3  # the real test split
    assert validation.num_examples == 3  # 15% of the 20 train reviews
    assert task.steps_per_epoch == 17 // 8
    root = str(tmp_path / "cache" / "aclImdb")
    texts, labels = imdb.read_acl_imdb(root, "train")
    assert len(texts) == 20 and labels.tolist() == [0] * 10 + [1] * 10
    assert all(("great" in t) == bool(y) and "train review" in t for t, y in zip(
        texts, labels, strict=True))
    assert sorted(os.listdir(tmp_path / "cache")) == ["aclImdb", "aclImdb_v1.tar.gz"]
    imdb.load(config)
    assert file_server.requests == ["/aclImdb_v1.tar.gz"], "downloaded and unpacked once"


def test_acl_imdb_offline_fails_fast_saying_where_to_put_the_archive(tmp_path):
    config = _imdb_config(tmp_path / "cache", f"http://127.0.0.1:{_refused_port()}/a.tar.gz")
    start = time.time()
    with pytest.raises(DataError, match="Cannot download.*Put aclImdb_v1.tar.gz"):
        imdb.load(config)
    assert time.time() - start < 5
    config.data.dir = str(tmp_path / "reviews.csv")
    open(config.data.dir, "w").close()
    with pytest.raises(DataError, match="is a file.*source=csv"):
        imdb.load(config)


def test_a_mirror_serving_other_bytes_is_not_called_damaged(file_server, tmp_path):
    images = tmp_path / "train-images-idx3-ubyte.gz"  # a recompressed copy: other bytes
    write_idx(images, np.zeros((2, 28, 28)))
    file_server.files["/mnist/train-images-idx3-ubyte.gz"] = images.read_bytes()
    config = _mnist_config(tmp_path / "cache", file_server.url + "/mnist/")
    with pytest.raises(DataError) as error:
        mnist.load(config)
    message = str(error.value)
    assert "its bytes differ from the expected file's (SHA-256)" in message
    assert "damaged" not in message and mnist.CHECKSUMS[images.name] in message
    assert "--config.data.dir to a folder holding them (copies from any mirror, recompressed" \
        in message
    assert len(file_server.requests) == 2 and tree(tmp_path / "cache") == []
    file_server.damage = ["truncate"] * 2  # cut off the same way twice: damaged
    size = images.stat().st_size
    with pytest.raises(DataError, match=f"damaged download.*broke off after {size // 2} of "
                       f"{size} bytes"):
        mnist.load(config)
