"""scripts/: what the GPU script packs for the next machine."""

from __future__ import annotations

import importlib.util
import json
import os
import tarfile

from tests.test_training import ROOT


def _pack_runs():
    spec = importlib.util.spec_from_file_location(
        "pack_runs", os.path.join(ROOT, "scripts", "pack_runs.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(directory, results=None):
    for path in ("latest/2/tree/d", "latest/4/tree/d", "best/2/tree/d", "best/3/tree/d",
                 "tensorboard/events"):
        os.makedirs(os.path.dirname(directory / path), exist_ok=True)
        (directory / path).write_text("x")
    (directory / "metrics.jsonl").write_text("{}\n")
    if results is not None:
        (directory / "results.json").write_text(json.dumps(results))


def test_pack_runs_keeps_what_a_resume_reads(tmp_path):
    source = tmp_path / "gpu_run"
    _run(source / "table1" / "skip_lstm", {"steps": 4, "total_steps": 30000})  # may train on
    _run(source / "table1" / "lstm", {"steps": 4, "total_steps": 30000,
                                      "stopped": "stop_when_settled"})
    _run(source / "table1" / "gru", {"steps": 30000, "total_steps": 30000})  # trained every step
    _run(source / "mnist_fast" / "skip_gru")  # no results.json yet: may train on
    written = _pack_runs().pack(str(source), str(tmp_path / "out"))
    assert [os.path.basename(w) for w in written] == ["workdirs_mnist_fast.tar.gz",
                                                      "workdirs_table1.tar.gz"]
    with tarfile.open(written[1]) as tar:
        files = {name.split("table1/", 1)[1] for name in tar.getnames() if "/" in name
                 and tar.getmember(name).isfile()}
    assert files == {
        "skip_lstm/latest/4/tree/d", "skip_lstm/best/3/tree/d", "skip_lstm/metrics.jsonl",
        "skip_lstm/results.json",
        "lstm/best/3/tree/d", "lstm/metrics.jsonl", "lstm/results.json",
        "gru/best/3/tree/d", "gru/metrics.jsonl", "gru/results.json"}
    with tarfile.open(written[0]) as tar:
        assert "latest/4/tree/d" in " ".join(tar.getnames())


def test_pack_row_resumes_with_tar_into_the_workdir(tmp_path):
    row = tmp_path / "ours" / "skip_lstm"
    _run(row, {"steps": 4, "total_steps": 30000})
    (row / "latest" / "6.orbax-checkpoint-tmp-1").mkdir()  # a step orbax is still writing
    written = _pack_runs().pack_row(str(row), str(tmp_path / "results" / "skip_lstm"))
    assert written == str(tmp_path / "results" / "skip_lstm" / "checkpoint_4.tar.gz")
    with tarfile.open(written) as tar:
        tar.extractall(tmp_path / "next", filter="data")
    files = {os.path.relpath(os.path.join(d, f), tmp_path / "next")
             for d, _, names in os.walk(tmp_path / "next") for f in names}
    assert files == {"skip_lstm/latest/4/tree/d", "skip_lstm/best/3/tree/d",
                     "skip_lstm/metrics.jsonl", "skip_lstm/results.json"}
