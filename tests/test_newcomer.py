"""What a newcomer meets first: config values of the wrong type refused with the key named,
one-line command-line errors (exit 2), readable figures after one evaluation, the README's and
the docs' commands and snippets as written."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys

import ml_collections
import pytest

from configs import adding as adding_config
from skip_rnn.experiments import configuration, figures, records, reproduce, trainer
from skip_rnn.experiments.configuration import ConfigError
from skip_rnn.experiments.data import mnist

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = open(os.path.join(ROOT, "README.md")).read()
DOCS = {name: open(os.path.join(ROOT, "docs", name)).read()
        for name in sorted(os.listdir(os.path.join(ROOT, "docs"))) if name.endswith(".md")}


@pytest.mark.parametrize("key, value, message", [
    ("num_seeds", 1.5, "config.num_seeds=1.5 is invalid: must be an int."),
    ("num_seeds", True, "config.num_seeds=True is invalid: must be an int."),
    ("stop_when_settled", 1, "config.stop_when_settled=1 is invalid: must be a bool."),
    ("model.gradient", None, "config.model.gradient=None is invalid: must be a str."),
    ("model.hidden_size", "64", "config.model.hidden_size='64' is invalid: must be an int."),
    ("num_seed", 2, "config.num_seed: no such key. Did you mean config.num_seeds?"),
    ("model.cel", "gru", "config.model.cel: no such key. Did you mean config.model.cell?"),
    ("num_seeds.x", 1, "config.num_seeds.x: no such key."),
])
def test_assign_refuses_another_type_naming_the_key(key, value, message):
    config = adding_config.get_config()
    with pytest.raises(ConfigError) as error:
        configuration.assign(config, key, value)
    assert str(error.value) == message
    assert config == adding_config.get_config(), "nothing assigned"


def test_assign_widens_ints_to_floats_and_converts_sequences():
    config = adding_config.get_config()
    configuration.assign(config, "learning_rate", 1)
    configuration.assign(config, "costs_per_sample", [0, 1e-4])
    configuration.assign(config, "model.gradient", "reference_code")
    assert type(config.learning_rate) is float and config.learning_rate == 1.0
    assert config.costs_per_sample == (0, 1e-4) and config.model.gradient == "reference_code"
    config = ml_collections.ConfigDict({"optional": None})
    configuration.assign(config, "optional", "anything")  # a None field takes any value
    assert config.optional == "anything"


def _row(*assignments: str) -> ml_collections.ConfigDict:
    args = argparse.Namespace(num_seeds=1, num_train_steps=0, learning_rate=0.0, data_dir="",
                              set=list(assignments))
    return reproduce.row_config(3, "", reproduce.Row("skip_lstm", (1e-4,)), args)


def test_reproduce_set_parses_values_as_config_flags_do():
    config = _row("model.gradient=reference_code", "data.dir=null", "max_train_seconds=3600",
                  "stop_when_settled=true", "costs_per_sample=(0, 1e-4)", "model.gate_layers=0")
    assert config.model.gradient == "reference_code" and config.data.dir == "null"
    assert config.max_train_seconds == 3600.0 and config.stop_when_settled is True
    assert config.costs_per_sample == (0, 1e-4) and config.model.gate_layers == (0,)
    for assignment, message in [
            ("num_seeds=1.5", "config.num_seeds='1.5' is invalid: must be an int."),
            ("stop_when_settled=yes", "must be true or false"),
            ("costs_per_sample=0 1e-4", "must be a tuple"),
            ("eval_every", "expected --set=KEY=VALUE")]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            _row(assignment)


REPRODUCE = [sys.executable, "-m", "skip_rnn.experiments.reproduce", "--table=1",
             "--workdir=unused"]
TRAIN = [sys.executable, "train.py"]


def test_command_line_errors_are_one_line_exit_2():
    cases = {  # command -> what its one line says
        (*REPRODUCE, "--set=bogus=1"): "reproduce: config.bogus: no such key.",
        (*REPRODUCE, "--num_seeds=0"): "reproduce: config.num_seeds=0 is invalid: must be > 0.",
        (*TRAIN, "--config=configs/common.py"): "train.py: --config=configs/common.py is not a "
        "task config (it has no get_config()). The configs are adding.py, charades.py, "
        "frequency.py, imdb.py",
        (*TRAIN, "--config.bogus=1"): "train.py: unknown config key 'bogus'",  # default config
    }
    runs = {command: subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True,
                                      env={**os.environ, "JAX_PLATFORMS": "cpu"})
            for command in cases}
    for command, run in runs.items():
        _, error = run.communicate(timeout=120)
        assert run.returncode == 2, (command, error)
        assert error.count("\n") == 1 and "Traceback" not in error, error
        assert error.startswith(cases[command]), (command, error)


@pytest.mark.parametrize("assignment, says", [
    ("cost_per_sample=0", "reproduce: --set=cost_per_sample=0: a table's row trains its λ list, "
                          "costs_per_sample; set that instead"),
    ("costs_per_sample=(0.0", "reproduce: config.costs_per_sample=('(0.0',) is invalid: must "
                              "be numbers"),
    ("costs_per_sample=()", "reproduce: --set=costs_per_sample=(): a row needs at least one λ."),
])
def test_reproduce_refuses_a_lambda_it_would_not_train(assignment, says, monkeypatch, capsys):
    monkeypatch.setattr(trainer, "train_and_evaluate", _fake_result)
    monkeypatch.setattr(sys, "argv", [*REPRODUCE[2:], "--models=skip_lstm", f"--set={assignment}"])
    with pytest.raises(SystemExit) as exit_:
        reproduce.main()
    error = capsys.readouterr().err
    assert exit_.value.code == 2 and error.startswith(says) and error.count("\n") == 1, error


def test_reproduce_argument_errors_are_one_line(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [*REPRODUCE[2:], "--models=rnn"])
    with pytest.raises(SystemExit) as exit_:
        reproduce.main()
    error = capsys.readouterr().err
    assert exit_.value.code == 2 and error.startswith("reproduce: --models: unknown ['rnn']")
    assert error.count("\n") == 1


def _fake_result(config, workdir) -> dict:
    """What ``train_and_evaluate`` returns: one solved member per λ at 50% updates."""
    test = {"metric": 1e-3, "updates_mean": 25.0, "updates_percent": 50.0,
            "inference_flops": 1e6, "solved": True}
    members = [records.MemberRecord(0, c, best={"step": 10, "test": test},
                                    validations=[records.Evaluation(10, 50.0, 0.5)])
               for c in config.costs_per_sample]
    run = records.RunRecord(config.to_dict(), members, 60.0)
    return {**run.to_json(), "summary": records.summarize(members), "steps": 10}


def test_reproduce_paths_and_columns_without_table_variants(tmp_path, monkeypatch, capsys):
    workdirs = []
    monkeypatch.setattr(trainer, "train_and_evaluate",
                        lambda config, workdir: workdirs.append(workdir) or
                        _fake_result(config, workdir))
    monkeypatch.setattr(sys, "argv", [*REPRODUCE[2:4], f"--workdir={tmp_path}",
                                      "--models=skip_lstm"])
    reproduce.main()
    printed = capsys.readouterr().out
    assert workdirs == [os.path.join(str(tmp_path), "skip_lstm")]
    assert f"== Table 1 skip_lstm λ=(0.0, 1e-05) -> {workdirs[0]}\n" in printed
    assert "| model | λ | solved |" in printed and "variant" not in printed
    assert "| skip_lstm | 1e-05 | 1/1 |" in printed
    with_variants = reproduce.format_rows(2, [{"variant": "Ts=1ms", "model": "lstm",
                                               "summary": _fake_result(_row(), "")["summary"],
                                               "seconds": 60.0, "steps": 10}])
    assert with_variants.startswith("| variant | model |") and "| Ts=1ms | lstm |" in with_variants


def test_reproduce_set_costs_per_sample_trains_and_names_those_only(tmp_path, monkeypatch,
                                                                    capsys):
    monkeypatch.setattr(trainer, "train_and_evaluate", _fake_result)
    monkeypatch.setattr(sys, "argv", [*REPRODUCE[2:4], f"--workdir={tmp_path}",
                                      "--models=skip_lstm", "--set=costs_per_sample=(0.0,)"])
    reproduce.main()
    printed = capsys.readouterr().out
    assert "== Table 1 skip_lstm λ=(0.0,) -> " in printed
    assert "| skip_lstm | 0 | 1/1 |" in printed and "| skip_lstm | 1e-05 |" not in printed


@pytest.mark.parametrize("error, exit_code", [
    (ConfigError("{workdir} holds a checkpoint of another model."), 2),  # what was asked
    (FloatingPointError("the loss is nan at step 5 (member 0) in {workdir}."), 1),  # the run
])
def test_reproduce_says_a_refused_or_stopped_row_in_one_line(error, exit_code, tmp_path,
                                                               monkeypatch, capsys):
    def fail(config, workdir):
        raise type(error)(str(error).format(workdir=workdir))

    monkeypatch.setattr(trainer, "train_and_evaluate", fail)
    monkeypatch.setattr(sys, "argv", [*REPRODUCE[2:4], f"--workdir={tmp_path}",
                                      "--models=skip_lstm"])
    with pytest.raises(SystemExit) as exit_:
        reproduce.main()
    assert exit_.value.code == exit_code
    assert capsys.readouterr().err == (
        f"reproduce: {str(error).format(workdir=tmp_path / 'skip_lstm')}\n")


def _visible_tick_labels(ax) -> list[str]:
    ax.figure.canvas.draw()
    low, high = ax.get_ylim()
    return [t.get_text() for t in ax.yaxis.get_ticklabels(which="both")
            if t.get_text() and low <= t.get_position()[1] <= high]


def test_curves_after_one_evaluation_show_a_point_and_distinct_ticks(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(json.dumps({"split": "validation", "step": 500, "metric": 0.154055,
                                   "updates_percent": 100.0, "seed": 0, "cost_per_sample": 0.0})
                       + "\n")
    figure = figures.curves_figure(str(metrics), "MSE")
    for ax in figure.axes:
        (line,) = ax.get_lines()
        assert line.get_marker() == "o" and len(line.get_xdata()) == 1
    labels = _visible_tick_labels(figure.axes[0])
    assert len(labels) >= 2 and len(set(labels)) == len(labels), labels
    low, high = figure.axes[0].get_ylim()
    assert low <= 0.154055 <= high


def test_quickstart_writes_its_figure_where_git_ignores_it():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "quickstart", os.path.join(ROOT, "examples", "quickstart.py"))
    quickstart = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quickstart)
    out = quickstart.parse_args([]).out
    assert out == os.path.join("workdirs", "quickstart.png")
    ignored = subprocess.run(["git", "check-ignore", "-q", out], cwd=ROOT)
    assert ignored.returncode == 0, f"{out} is not git-ignored"


def test_readme_and_docs_commands_use_the_projects_environment():
    pages = "\n".join([README, *DOCS.values()])
    blocks = re.findall(r"```bash\n(.*?)```", pages, re.S) + re.findall(r"`([^`\n]+)`", pages)
    bare = [line for block in blocks for line in block.splitlines()
            if re.search(r"(?<![\w/.-])python(?=\s)", line)]
    assert bare == [], "commands that need .venv/bin/python"


def test_readme_has_two_commands_under_its_heading():
    section = README.split("## The two commands", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)```", section, re.S)
    assert len(commands) == 2 and all(c.startswith("python3 -m venv .venv && ") for c in commands)


def test_docs_jump_stream_snippet_runs_as_written():
    block = next(b for b in re.findall(r"```python\n(.*?)```", DOCS["inference.md"], re.S)
                 if "sr.jump_stream" in b)
    namespace = {}
    exec(block, namespace)  # noqa: S102 - the README's own example
    assert namespace["t"] >= 1000


def test_docs_document_the_mnist_mirror_and_configs():
    for text in ("--config.data.url=", mnist.URL, "configs/mnist_fast.py",
                 "128,400 steps"):
        assert text in DOCS["experiments.md"], text


def test_charades_is_drawn_and_reported_as_map(tmp_path, monkeypatch):
    from skip_rnn.experiments import figures, metrics
    from skip_rnn.experiments.data import TaskData

    drawn = []
    monkeypatch.setattr(figures, "tradeoff", lambda *args: drawn.append(args))
    row = {"cost_per_sample": 0.0, "metric": {"mean": 0.088, "std": 0.002},
           "updates_percent": {"mean": 50.0, "std": 1.0}}
    reproduce.write_table(6, "charades", [{"variant": "", "model": "lstm", "summary": [row]}],
                          "| table |", str(tmp_path))
    _, points, name, _ = drawn[0]
    assert name == "mAP (%)" and points[0]["metric"] == pytest.approx({"mean": 8.8, "std": 0.2})
    task = TaskData(None, {}, 1, 157, per_step=True)
    assert metrics.metric_name(task) == "mAP"
    assert metrics.metric_name(task._replace(num_outputs=1, per_step=False)) == "MSE"
