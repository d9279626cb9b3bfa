"""End-to-end training on every config with tiny sizes and test-made data."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from skip_rnn.experiments import data, models, records, steps, trainer
from skip_rnn.experiments.checkpoints import Checkpoints

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(name: str, **data_values):
    """``configs/<name>.py`` at tiny sizes (2 steps, 4 units, batches of 8), with
    ``config.data`` values overridden by ``data_values``; shared by every test file."""
    config = importlib.import_module(f"configs.{name}").get_config()
    config.model.hidden_size = 4
    config.batch_size = 8
    config.eval_batch_size = 8
    config.num_train_steps = 2
    config.num_epochs = 0
    config.eval_every = 2
    config.checkpoint_every = 2
    config.log_every = 1
    config.num_figure_examples = 2
    sizes = {"adding": {"seq_length": 10, "num_eval": 12},
             "frequency": {"duration_ms": 20.0, "num_eval": 12},
             "imdb": {"seq_length": 12, "vocab_size": 50, "source": "csv"},
             "ucf101": {"seq_length": 10},
             "charades": {"seq_length": 10, "num_eval_frames": 4}}
    for key, value in {**sizes.get(name, {}), **data_values}.items():
        config.data[key] = value
    if name == "imdb":
        config.model.embedding_size = 6
    return config


def _leaves(workdir, which="latest"):
    """The parameters saved in a workdir's checkpoint, as NumPy leaves."""
    checkpoints = Checkpoints(workdir)
    manager = getattr(checkpoints, which)
    restored = manager.restore(manager.latest_step())
    checkpoints.close()
    tree = restored["tree"]
    return jax.tree.leaves(tree["state"]["params"] if which == "latest" else tree["params"])


@pytest.mark.parametrize("name", ["adding", "frequency", "mnist", "imdb", "ucf101", "charades"])
def test_every_config_trains_end_to_end(name, tmp_path, mnist_dir, imdb_csv, ucf_dir,
                                        charades_dir):
    sources = {"mnist": {"dir": mnist_dir}, "imdb": {"dir": imdb_csv},
               "ucf101": {"dir": ucf_dir}, "charades": {"dir": charades_dir}}.get(name, {})
    config = tiny_config(name, **sources)
    if name in ("ucf101", "charades"):
        config.model.num_layers = 2
    results = trainer.train_and_evaluate(config, str(tmp_path))
    assert results["steps"] == 2
    best = results["members"][0]["best"]
    assert set(best) == {"step", "validation", "test"}
    assert 0 < best["test"]["updates_percent"] <= 100
    lines = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert {line["split"] for line in lines} == {"train", "validation", "test"}
    assert {line["task"] for line in lines} == {name}
    assert os.path.isfile(tmp_path / "updates.png")
    assert os.path.isfile(tmp_path / "curves.png")
    assert os.path.isfile(tmp_path / "results.json")
    if name in ("adding", "frequency"):
        assert os.path.isfile(tmp_path / "used_samples.png")
        assert "solved" in best["validation"]
    if name == "mnist":
        assert os.path.isfile(tmp_path / "used_pixels.png")
        os.remove(tmp_path / "used_pixels.png")
        assert str(tmp_path / "used_pixels.png") in trainer.redraw_figures(config, tmp_path)
    task = data.load(config)
    initial = models.init_params(jax.random.key(config.seed), models.make_cell(config.model),
                                 task.input_size, task.num_outputs,
                                 None if task.embedding is None
                                 else task.embedding(config.seed))
    for before, after in zip(jax.tree.leaves(initial), _leaves(tmp_path), strict=True):
        assert np.any(before != after[0]), "every parameter leaf changes in training"


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    config = tiny_config("adding")
    config.num_train_steps = 4
    trainer.train_and_evaluate(config, str(tmp_path / "straight"))
    config.num_train_steps = 2  # "killed" after its step-2 checkpoint ...
    trainer.train_and_evaluate(config, str(tmp_path / "resumed"))
    config.num_train_steps = 4  # ... and restarted with the full command
    results = trainer.train_and_evaluate(config, str(tmp_path / "resumed"))
    assert results["steps"] == 4
    for a, b in zip(_leaves(tmp_path / "straight"), _leaves(tmp_path / "resumed"), strict=True):
        np.testing.assert_array_equal(a, b)
    lines = [json.loads(x) for x in open(tmp_path / "resumed" / "metrics.jsonl")]
    assert [x["step"] for x in lines if x["split"] == "train"] == [1, 2, 3, 4]


def test_time_limit_stops_training_and_saves_keeping_the_schedule(tmp_path, monkeypatch,
                                                                   capsys):
    config = tiny_config("adding")
    config.num_train_steps = 10
    config.max_train_seconds = 60.0
    clock = iter(range(100))  # out_of_time is read before the loop, then once a step
    monkeypatch.setattr(trainer._TrainLoop, "out_of_time", lambda self: next(clock) >= 3)
    results = trainer.train_and_evaluate(config, str(tmp_path))
    assert results["steps"] == 3  # neither an eval_every nor a checkpoint_every step (2):
    lines = [json.loads(x) for x in open(tmp_path / "metrics.jsonl")]
    # saved, but not evaluated off the schedule an uninterrupted run keeps
    assert [x["step"] for x in lines if x["split"] == "validation"] == [2]
    checkpoints = Checkpoints(str(tmp_path))
    assert checkpoints.latest.latest_step() == 3
    checkpoints.close()
    monkeypatch.undo()
    config.max_train_seconds = 1e-3  # already spent by the first session: nothing more
    assert trainer.train_and_evaluate(config, str(tmp_path))["steps"] == 3
    out = capsys.readouterr().out
    assert "max_train_seconds=0.001 is spent" in out
    assert "Stops after 0 s of training in all (config.max_train_seconds): 0 s left." in out


_FOUR_DEVICES = """
import json, os, sys
sys.path.insert(0, {root!r})
from tests.test_training import tiny_config
from skip_rnn.experiments import trainer
import jax
config = tiny_config("adding")
config.num_train_steps = 3
config.eval_every = 3
r = trainer.train_and_evaluate(config, {workdir!r})
print(json.dumps({{"devices": jax.device_count(), "best": r["members"][0]["best"]}}))
"""


def test_four_device_data_parallel_run_equals_one_device_run(tmp_path):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu"}
    script = _FOUR_DEVICES.format(root=ROOT, workdir=str(tmp_path / "four"))
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=300, check=True)
    four = json.loads(result.stdout.strip().splitlines()[-1])
    assert four["devices"] == 4
    config = tiny_config("adding")
    config.num_train_steps = 3
    config.eval_every = 3
    one = trainer.train_and_evaluate(config, str(tmp_path / "one"))["members"][0]["best"]
    for split in ("validation", "test"):
        for key, value in one[split].items():
            np.testing.assert_allclose(four["best"][split][key], value, rtol=1e-5, atol=1e-7,
                                       err_msg=f"{split}/{key}")


def test_missing_dataset_fails_fast_with_how_to(tmp_path):
    for name, overrides, match in [
        ("mnist", {"dir": str(tmp_path / "nowhere"), "download": False}, "MNIST IDX files"),
        ("mnist", {"source": "tfds", "dir": str(tmp_path)}, "not prepared"),
        ("imdb", {"dir": str(tmp_path / "none.csv")}, "text,label"),
        ("ucf101", {"dir": str(tmp_path)}, "classInd.txt"),
    ]:
        with pytest.raises(ValueError, match=match):
            trainer.train_and_evaluate(tiny_config(name, **overrides), str(tmp_path / "work"))


@pytest.mark.parametrize("cell, p_skip", [("skip_gru", 0.0), ("gru", 0.5)])
def test_population_members_equal_runs_alone(tmp_path, cell, p_skip):
    """Member (seed 1, λ = 1e-2) of a population trains and evaluates as a run of that seed
    alone; with random skips (p_skip), it draws its own masks in training and evaluation."""
    config = tiny_config("frequency")
    config.num_seeds = 2
    config.costs_per_sample = (0.0, 1e-2)
    config.model.cell, config.model.p_skip = cell, p_skip
    results = trainer.train_and_evaluate(config, str(tmp_path / "population"))
    members = results["members"]
    assert [(m["seed"], m["cost_per_sample"]) for m in members] == [
        (0, 0.0), (1, 0.0), (0, 1e-2), (1, 1e-2)]
    assert [row["runs"] for row in results["summary"]] == [2, 2]
    population = _leaves(tmp_path / "population")
    alone_config = tiny_config("frequency")
    alone_config.model.cell, alone_config.model.p_skip = cell, p_skip
    alone_config.seed, alone_config.cost_per_sample = 1, 1e-2
    alone = trainer.train_and_evaluate(alone_config, str(tmp_path / "alone"))["members"][0]
    for key, value in alone["best"]["test"].items():
        np.testing.assert_allclose(members[3]["best"]["test"][key], value, rtol=1e-5,
                                   err_msg=key)
    for p, a in zip(population, _leaves(tmp_path / "alone"), strict=True):
        np.testing.assert_allclose(p[3], a[0], rtol=1e-5, atol=1e-6)


def test_reproduce_prints_the_table_in_the_papers_form(tmp_path, monkeypatch, capsys):
    from skip_rnn.experiments import reproduce

    monkeypatch.setattr(sys, "argv", [
        "reproduce", "--table=1", f"--workdir={tmp_path}", "--num_seeds=2",
        "--models=skip_gru,gru_pskip0.5",
        "--num_train_steps=2", "--set=eval_every=2", "--set=data.seq_length=10",
        "--set=data.num_eval=8", "--set=model.hidden_size=4", "--set=batch_size=8",
        "--set=eval_batch_size=8", "--set=num_figure_examples=0"])
    reproduce.main()  # one row: printed, no table files (rows may run side by side)
    printed = capsys.readouterr().out
    assert "| skip_gru | 1e-05 |" in printed and "Yes / 50.7% ± 2.6% / 9.40e5" in printed
    assert "| gru (p_skip = 0.5) | 0 |" in printed and "No / 49.9% ± 0.6% / 9.25e5" in printed
    assert not (tmp_path / "table1.md").exists()
    monkeypatch.setattr(sys, "argv", [
        "reproduce", "--table=1", f"--workdir={tmp_path}", "--collect"])
    reproduce.main()  # every row's results.json that exists, nothing trained
    table = (tmp_path / "table1.md").read_text()
    assert table in printed
    rows = json.loads((tmp_path / "table1.json").read_text())
    assert [r["runs"] for r in rows[1]["summary"]] == [2, 2]
    flops = rows[1]["summary"][0]["inference_flops"]["mean"]
    assert f"| {flops:.2e} |" in table
    assert (tmp_path / "table1.png").stat().st_size > 0
    assert "row left out" in capsys.readouterr().out  # the rows not run are named
    monkeypatch.setattr(sys, "argv", [
        "reproduce", "--table=1", f"--workdir={tmp_path}", "--collect", "--models=skip_gru"])
    reproduce.main()  # some rows: printed, the whole table's files left as they are
    assert (tmp_path / "table1.md").read_text() == table
    assert "Some rows only: printed, not written" in capsys.readouterr().out
    old = tmp_path / "gru_pskip0.5" / "results.json"
    old.write_text(json.dumps({**json.loads(old.read_text()), "version": 0}))
    monkeypatch.setattr(sys, "argv", [
        "reproduce", "--table=1", f"--workdir={tmp_path}", "--collect"])
    reproduce.main()
    assert (f"-- {old} was written by an earlier version of skip-rnn: row left out"
            in capsys.readouterr().out)
    for wrong in (["--models=rnn"], ["--variants=Ts=2ms"], ["--collect", "--workdir=nowhere"]):
        monkeypatch.setattr(sys, "argv", ["reproduce", "--table=1", "--workdir=x", *wrong])
        with pytest.raises(SystemExit):
            reproduce.main()


def test_reproduce_says_how_padded_datasets_count_updates():
    from skip_rnn.experiments import reproduce

    summary = [{"cost_per_sample": 0.0, "runs": 1, "metric": {"mean": 0.8, "std": 0.0},
                "updates_mean": {"mean": 200.0, "std": 0.0}}]
    row = {"variant": "length 200", "model": "lstm", "summary": summary, "seconds": 60,
           "steps": 10}
    fed = reproduce.format_rows(4, [{**row, "mask_padding": False}])
    assert "| 0.843 ± 0.003 / 200.00 ± 0.00 |" in fed and "padding included" in fed
    masked = reproduce.format_rows(4, [{**row, "mask_padding": True}])
    assert "padding masked" in masked and "padding included" not in masked
    assert "padding" not in reproduce.format_rows(1, [{**row, "variant": "", "mask_padding": None,
                                                      "summary": [{**summary[0], "solved": 1,
                                                                   "updates_percent":
                                                                   {"mean": 1, "std": 0}}]}])
    charades = reproduce.format_rows(6, [{**row, "variant": "", "mask_padding": True}])
    assert "| mAP (%) |" in charades and "| 80.000 ± 0.000 |" in charades  # 0.8 -> 80 %
    assert "8.40 / 172.9 ± 47.4 / 2.65e12" in charades
    args = argparse.Namespace(num_seeds=1, num_train_steps=0, learning_rate=0.0, data_dir="",
                              set=[])
    config = reproduce.row_config(4, "length 200", reproduce.Row("lstm"), args)
    assert config.data.mask_padding is False and config.data.seq_length == 200


def test_best_prefers_solved_models_with_fewer_updates():
    adding = data.TaskData(None, {}, 2, 1, solved=lambda mse: mse < 0.01)
    unsolved = {"metric": 0.5, "updates_mean": 10.0, "solved": False}
    solved_dense = {"metric": 0.001, "updates_mean": 50.0, "solved": True}
    solved_sparse = {"metric": 0.005, "updates_mean": 25.0, "solved": True}
    ranks = [records.rank(m, adding) for m in (unsolved, solved_dense, solved_sparse)]
    assert ranks == sorted(ranks)
    mnist = data.TaskData(None, {}, 1, 10)
    assert records.rank({"metric": 0.9, "updates_mean": 700.0}, mnist) > records.rank(
        {"metric": 0.8, "updates_mean": 100.0}, mnist)


def test_cosine_schedule_warms_up_then_decays_to_zero():
    config = tiny_config("adding")
    config.learning_rate, config.lr_schedule, config.warmup_steps = 1e-3, "cosine", 10
    schedule = steps.learning_rate_schedule(config, total_steps=110)
    np.testing.assert_allclose([schedule(0), schedule(5), schedule(10), schedule(60),
                                schedule(110)], [0, 5e-4, 1e-3, 5e-4, 0], atol=1e-9)
    config.decay_steps = 210  # decays over more steps than this run trains
    np.testing.assert_allclose(steps.learning_rate_schedule(config, 110)(110), 5e-4)
    config.lr_schedule = "constant"
    assert steps.learning_rate_schedule(config, 110) == 1e-3


@pytest.mark.parametrize("name", ["adding", "frequency", "mnist_fast", "imdb", "ucf101",
                                  "charades"])
def test_show_config_lists_every_key_with_its_comment(name):
    from skip_rnn.experiments import configuration

    module = importlib.import_module(f"configs.{name}")
    config = module.get_config()
    lines = configuration.describe(config, module).splitlines()
    assert len(lines) == len(configuration._flatten(config.to_dict()))
    undocumented = [line for line in lines if "#" not in line]
    assert not undocumented, undocumented
    assert "  batch_size = 256    # training sequences per step (per member), split over devices" \
        in lines
    if name == "mnist_fast":  # the config file's own comment before the one it builds on
        assert "  learning_rate = 0.001    # the peak" in lines


def test_compare_runs_draws_several_metrics_files(tmp_path):
    from skip_rnn.experiments import figures

    runs = {}
    for name, accuracy in (("paper", 0.2), ("fast", 0.4)):
        path = tmp_path / f"{name}.jsonl"
        rows = [{"step": s, "split": "validation", "member": 0, "metric": accuracy * s / 2,
                 "updates_percent": 50.0} for s in (1, 2)]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        runs[name] = str(path)
    out = figures.compare_runs(str(tmp_path / "compare.png"), runs, "accuracy")
    assert os.path.getsize(out) > 0


def test_compare_runs_at_one_cost_draws_every_member_at_it(tmp_path, monkeypatch):
    from skip_rnn.experiments import figures

    path = tmp_path / "metrics.jsonl"
    rows = [{"step": s, "split": "validation", "member": m, "seed": m % 2,
             "cost_per_sample": 0.0 if m < 2 else 1e-5, "metric": 1e-3, "updates_percent": 90.0}
            for s in (1, 2) for m in range(4)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    drawn = []
    monkeypatch.setattr(figures, "_save", lambda fig, out: drawn.append(fig) or out)
    figures.compare_runs("a.png", {"ours": str(path), "theirs": str(path)}, "MSE", 0.0)
    lines = drawn[0].axes[1].get_lines()
    assert len(lines) == 4 and [line.get_label() for line in lines].count("ours") == 1
    with pytest.raises(ValueError, match="no validation of a member with λ = 0.5"):
        figures.compare_runs("b.png", {"ours": str(path)}, "MSE", 0.5)


def test_reproduce_reports_where_the_update_rate_ended_beside_the_best_checkpoint():
    """The table's "updates, last eval" column: the members' last validation rates, mean ± std,
    even for a results.json summarized before the column existed."""
    from skip_rnn.experiments import records, reproduce

    members = [records.MemberRecord(seed, 1e-5, best={"test": {
        "metric": 1e-4, "updates_mean": 25.0, "updates_percent": 50.0, "inference_flops": 1.0,
        "solved": True}}, validations=[records.Evaluation(500, 100.0, 1.0),
                                       records.Evaluation(1000, last, 0.3)])
               for seed, last in ((0, 60.0), (1, 80.0))]
    saved = records.RunRecord({"data": {}, "num_train_steps": 1000}, members).to_json()
    old_summary = records.summarize(members)
    for row in old_summary:
        del row["last_updates_percent"]
    result = reproduce._row_result("", reproduce.Row("skip_lstm", (1e-5,)),
                                   {**saved, "summary": old_summary, "steps": 1000})
    table = reproduce.format_rows(1, [result])
    assert "| state updates | updates, last eval |" in table.splitlines()[0]
    assert "| 50.0% ± 0.0% | 70.0% ± 10.0% |" in table


def test_the_updates_figure_greys_padding_and_counts_real_steps(monkeypatch):
    from skip_rnn.experiments import figures

    drawn = []
    monkeypatch.setattr(figures, "_save", lambda fig, path: drawn.append(fig) or path)
    u = np.array([[1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])  # the zeros past 3 and 2: padding
    figures.updates_raster("u.png", u, "imdb", lengths=np.array([3, 2]))
    ax = drawn[0].axes[0]
    assert ax.get_title() == "imdb: 80.0% updates, padding grey"  # 4 of 5 real steps
    shown = ax.get_images()[0].get_array()
    assert shown.mask.tolist() == [[False, False, False, True], [False, False, True, True]]
    figures.updates_raster("u.png", u, "adding")
    assert drawn[1].axes[0].get_title() == "adding: 50.0% updates"
