"""Shared fixtures: tiny on-disk datasets in the standard formats, and tiny configs."""

from __future__ import annotations

import gzip
import http.server
import io
import os
import struct
import tarfile
import threading

import numpy as np
import pytest

from skip_rnn.experiments import allocator


def pytest_configure(config):
    """The test processes that start after this (pytest-xdist's workers, the tests'
    subprocesses) run under the caching allocator, as the entry points do: the suite runs
    faster, and a subprocess of ``train.py`` need not restart itself."""
    os.environ.update(allocator.environment() or {})


def write_idx(path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory):
    """Standard MNIST IDX files with 40 train and 10 test images."""
    directory = tmp_path_factory.mktemp("mnist")
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 40), ("t10k", 10)):
        write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    return str(directory)


@pytest.fixture(scope="session")
def imdb_csv(tmp_path_factory):
    """A ``text,label`` CSV of 60 short reviews."""
    path = tmp_path_factory.mktemp("imdb") / "reviews.csv.gz"
    rng = np.random.default_rng(0)
    words = ["good", "bad", "movie", "plot", "great", "awful", "actor", "the"]
    with gzip.open(path, "wt") as f:
        f.write("text,label\n")
        for i in range(60):
            text = " ".join(rng.choice(words, rng.integers(3, 12)))
            f.write(f"\"{text} <br /><br />It's {i}\",{i % 2}\n")
    return str(path)


@pytest.fixture(scope="session")
def ucf_dir(tmp_path_factory):
    """The UCF-101 layout with 3 classes, 24 train (groups 8-11) and 6 test (group 1) videos of
    8-d features."""
    directory = tmp_path_factory.mktemp("ucf101")
    (directory / "features").mkdir()
    rng = np.random.default_rng(0)
    classes = ["ApplyEyeMakeup", "Basketball", "Drumming"]
    (directory / "classInd.txt").write_text(
        "".join(f"{i + 1} {c}\n" for i, c in enumerate(classes)))
    for split, n, first_group in (("trainlist01.txt", 24, 8), ("testlist01.txt", 6, 1)):
        lines = []
        for i in range(n):  # groups of 6 clips: 2 per class
            c = classes[i % 3]
            name = f"v_{c}_g{first_group + i // 6:02d}_c{i // 3 % 2 + 1:02d}"
            np.save(directory / "features" / f"{name}.npy",
                    rng.normal(size=(rng.integers(3, 12), 8)).astype(np.float32))
            lines.append(f"{c}/{name}.avi {i % 3 + 1}\n")
        (directory / split).write_text("".join(lines))
    return str(directory)


@pytest.fixture(scope="session")
def charades_dir(tmp_path_factory):
    """The official Charades layout with 10 train and 3 test videos of 8-d features; feature
    ``[k, j]`` of video ``v`` (CSV order, train then test) is ``100·v + k + j/10``, in the file
    ``<id>/<id>-<4k+1:06d>.txt`` (every 4th frame at 24 fps).

    Test videos: TEST1, 7 frames, c002 over 0-0.5 s and c156 over 0.4-1 s; TEST2, 12 frames,
    c000 over 1-1.5 s; TEST3, 3 frames, no action.
    """
    directory = tmp_path_factory.mktemp("charades")
    rng = np.random.default_rng(0)
    train = [(f"TR{i:03d}", int(rng.integers(3, 10)), f"c{i % 3:03d} 0.00 0.80;c010 0.30 9.00")
             for i in range(10)]
    test = [("TEST1", 7, "c002 0.00 0.50;c156 0.40 1.00"), ("TEST2", 12, "c000 1.00 1.50"),
            ("TEST3", 3, "")]
    for v, (video, frames, _) in enumerate(train + test):
        (directory / "Charades_v1_features_rgb" / video).mkdir(parents=True)
        for k in range(frames):
            text = " ".join(f"{100 * v + k + j / 10:.6g}" for j in range(8))
            (directory / "Charades_v1_features_rgb" / video / f"{video}-{4 * k + 1:06d}.txt"
             ).write_text(text + "\n")
    header = ("id,subject,scene,quality,relevance,verified,script,objects,descriptions,actions,"
              "length\n")
    for name, videos in (("Charades_v1_train.csv", train), ("Charades_v1_test.csv", test)):
        rows = [f'{video},SUBJ,Kitchen,6,7,Yes,"A person, smiling, opens a door.",door,'
                f'"Opens it; then leaves.",{actions},{frames / 6:.2f}\n'
                for video, frames, actions in videos]
        (directory / name).write_text(header + "".join(rows))
    return str(directory)


@pytest.fixture(scope="session")
def acl_imdb_tar(tmp_path_factory):
    """``aclImdb_v1.tar.gz``'s layout: 10 positive and 10 negative train reviews, 3 and 3 test
    reviews ("great ..." for positive, "awful ..." for negative), plus files to ignore."""
    path = tmp_path_factory.mktemp("aclimdb") / "aclImdb_v1.tar.gz"
    files = {"aclImdb/imdb.vocab": "great\nawful\n", "aclImdb/train/unsup/0_0.txt": "unlabelled"}
    for split, n in (("train", 10), ("test", 3)):
        for sentiment, word, stars in (("pos", "great", 9), ("neg", "awful", 2)):
            for i in range(n):
                files[f"aclImdb/{split}/{sentiment}/{i}_{stars}.txt"] = (
                    f"A {word} film,<br /><br />{split} review {i}.")
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return str(path)


class _FileHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files``; each response takes the next entry of ``server.damage``."""

    def do_GET(self):
        self.server.requests.append(self.path)
        body = self.server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        damage = self.server.damage.pop(0) if self.server.damage else None
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if damage == "corrupt":
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        elif damage == "truncate":  # announce the whole file, send half, hang up
            body = body[: len(body) // 2]
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def file_server():
    """An HTTP server on 127.0.0.1: ``files`` (path -> bytes) to serve at ``url + path``;
    ``damage``, what to do to the next responses ("corrupt": flip a byte, "truncate": hang up
    halfway; None: nothing); ``requests``, the paths asked for."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FileHandler)
    server.files, server.damage, server.requests = {}, [], []
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
