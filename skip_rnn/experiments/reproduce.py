"""Reproduces a table of the paper: every row, four seeds each, printed in the paper's form.

    python -m skip_rnn.experiments.reproduce --table=1 --workdir=workdirs/table1 [--num_seeds=4]
        [--num_train_steps=N] [--learning_rate=1e-3] [--data_dir=...] [--set=key=value ...]
        [--models=lstm,skip_lstm] [--variants=Ts=1ms] [--collect]

Each model of the table is one population run (all its λ x seeds in one jitted step, see
:mod:`skip_rnn.experiments.trainer`) in ``<workdir>/<variant>/<model>`` (``<workdir>/<model>``
in tables without variants); rerunning resumes. The table is printed and written to
``<workdir>/table<N>.md`` and ``.json``, next to the paper's numbers, and drawn as test metric
against state updates in ``<workdir>/table<N>.png``. Every row's config is checked before the
first row trains; errors in what was asked print one line and exit 2. Rows can also run as
separate commands (``--models``, ``--variants``), which print their rows only; ``--collect``
then prints and writes the whole table from the rows' ``results.json``.
On one GPU run them one after another: processes side by side each run ≈10x slower.
"""

from __future__ import annotations

import argparse
import ast
import functools
import importlib
import json
import os
import sys
from typing import Any, NamedTuple

import jax
import ml_collections
from absl import flags
from ml_collections.config_flags import tuple_parser

from skip_rnn.experiments import configuration, figures, trainer
from skip_rnn.experiments.data.sources import DataError


class Row(NamedTuple):
    """A row group of a table: one model, its λs (one population), or a random-skip baseline."""

    model: str
    costs: tuple[float, ...] = (0.0,)
    p_skip: float = 0.0

    @property
    def name(self) -> str:
        """As ``--models`` and the workdir spell it: ``lstm``, ``lstm_pskip0.5``."""
        return f"{self.model}_pskip{self.p_skip:g}" if self.p_skip else self.model


class Table(NamedTuple):
    task: str
    variants: dict[str, dict]  # name -> config.data overrides
    rows: list[Row]
    updates_kind: str  # "% updates" or "updates", as the paper prints them
    overrides: dict[str, Any]  # config values every row of the table uses
    metric: str = "accuracy"  # the column's name; "mAP (%)" prints the metric x 100


REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PADDING_FED = {"data.mask_padding": False}  # the paper feeds and counts padded steps
TABLES = {
    1: Table("adding", {"": {}},
             [Row("lstm"), Row("lstm", p_skip=0.2), Row("lstm", p_skip=0.5),
              Row("skip_lstm", (0.0, 1e-5)), Row("gru"), Row("gru", p_skip=0.02),
              Row("gru", p_skip=0.5), Row("skip_gru", (0.0, 1e-5))], "% updates", {}),
    2: Table("frequency", {"Ts=1ms": {"sampling_period_ms": 1.0},
                           "Ts=0.5ms": {"sampling_period_ms": 0.5}},
             [Row("lstm"), Row("skip_lstm", (0.0, 1e-5, 1e-4)), Row("gru"),
              Row("skip_gru", (0.0, 1e-5, 1e-4))], "updates", {}),
    3: Table("mnist", {"": {}},
             [Row("lstm"), Row("lstm", p_skip=0.5), Row("skip_lstm", (1e-4,)), Row("gru"),
              Row("gru", p_skip=0.5), Row("skip_gru", (1e-4,))], "updates", {}),
    4: Table("imdb", {"length 200": {"seq_length": 200}, "length 400": {"seq_length": 400}},
             [Row("lstm"), Row("skip_lstm", (0.0, 1e-5, 1e-4, 1e-3)), Row("gru"),
              Row("skip_gru", (0.0, 1e-5, 1e-4, 1e-3))], "updates", PADDING_FED),
    5: Table("ucf101", {"": {}},
             [Row("lstm"), Row("skip_lstm", (0.0, 1e-5, 1e-4)), Row("gru"),
              Row("skip_gru", (0.0, 1e-5, 1e-4))], "updates", PADDING_FED),
    6: Table("charades", {"": {}},
             [Row("lstm"), Row("lstm", p_skip=0.75), Row("lstm", p_skip=0.9),
              Row("skip_lstm", (0.0, 1e-4, 1e-3, 1e-2)), Row("gru"), Row("gru", p_skip=0.1),
              Row("gru", p_skip=0.4), Row("gru", p_skip=0.7), Row("gru", p_skip=0.9),
              Row("skip_gru", (0.0, 1e-4, 1e-3, 1e-2))], "updates", {}, "mAP (%)"),
}

# The published paper's numbers: (variant, row name, λ) -> (task result, state updates,
# inference FLOPs where the paper gives them). Its tables are numbered differently: 1 adding,
# 2 MNIST, 3 Charades (6 here; one run each, updates mean ± std over videos), 4 frequency,
# 5 IMDB, 6 UCF-101.
PAPER = {
    1: {("", "lstm", 0.0): ("Yes", "100.0% ± 0.0%", "2.46e6"),
        ("", "lstm_pskip0.2", 0.0): ("No", "80.0% ± 0.1%", "1.97e6"),
        ("", "lstm_pskip0.5", 0.0): ("No", "50.1% ± 0.1%", "1.23e6"),
        ("", "skip_lstm", 0.0): ("Yes", "81.1% ± 3.6%", "2.00e6"),
        ("", "skip_lstm", 1e-5): ("Yes", "53.9% ± 2.1%", "1.33e6"),
        ("", "gru", 0.0): ("Yes", "100.0% ± 0.0%", "1.85e6"),
        ("", "gru_pskip0.02", 0.0): ("No", "98.0% ± 0.0%", "1.81e6"),
        ("", "gru_pskip0.5", 0.0): ("No", "49.9% ± 0.6%", "9.25e5"),
        ("", "skip_gru", 0.0): ("Yes", "97.9% ± 3.2%", "1.81e6"),
        ("", "skip_gru", 1e-5): ("Yes", "50.7% ± 2.6%", "9.40e5")},
    2: {("Ts=1ms", "lstm", 0.0): ("Yes", "100.0 ± 0.00"),
        ("Ts=1ms", "skip_lstm", 0.0): ("Yes", "55.5 ± 16.9"),
        ("Ts=1ms", "skip_lstm", 1e-5): ("Yes", "47.4 ± 14.1"),
        ("Ts=1ms", "skip_lstm", 1e-4): ("Yes", "12.7 ± 0.5"),
        ("Ts=1ms", "gru", 0.0): ("Yes", "100.0 ± 0.00"),
        ("Ts=1ms", "skip_gru", 0.0): ("Yes", "73.7 ± 17.9"),
        ("Ts=1ms", "skip_gru", 1e-5): ("Yes", "51.9 ± 10.2"),
        ("Ts=1ms", "skip_gru", 1e-4): ("Yes", "23.5 ± 6.2"),
        ("Ts=0.5ms", "lstm", 0.0): ("Yes", "200.0 ± 0.00"),
        ("Ts=0.5ms", "skip_lstm", 0.0): ("Yes", "147.9 ± 27.0"),
        ("Ts=0.5ms", "skip_lstm", 1e-5): ("Yes", "50.7 ± 16.8"),
        ("Ts=0.5ms", "skip_lstm", 1e-4): ("Yes", "19.9 ± 1.5"),
        ("Ts=0.5ms", "gru", 0.0): ("Yes", "200.0 ± 0.00"),
        ("Ts=0.5ms", "skip_gru", 0.0): ("Yes", "167.0 ± 18.3"),
        ("Ts=0.5ms", "skip_gru", 1e-5): ("Yes", "54.2 ± 4.4"),
        ("Ts=0.5ms", "skip_gru", 1e-4): ("Yes", "22.5 ± 2.1")},
    3: {("", "lstm", 0.0): ("0.910 ± 0.045", "784.00 ± 0.00", "3.83e7"),
        ("", "lstm_pskip0.5", 0.0): ("0.893 ± 0.003", "392.03 ± 0.05", "1.91e7"),
        ("", "skip_lstm", 1e-4): ("0.973 ± 0.002", "379.38 ± 33.09", "1.86e7"),
        ("", "gru", 0.0): ("0.968 ± 0.013", "784.00 ± 0.00", "2.87e7"),
        ("", "gru_pskip0.5", 0.0): ("0.912 ± 0.004", "391.86 ± 0.14", "1.44e7"),
        ("", "skip_gru", 1e-4): ("0.976 ± 0.003", "392.62 ± 26.48", "1.44e7")},
    4: {("length 200", "lstm", 0.0): ("0.843 ± 0.003", "200.00 ± 0.00"),
        ("length 200", "skip_lstm", 0.0): ("0.844 ± 0.004", "196.75 ± 5.63"),
        ("length 200", "skip_lstm", 1e-5): ("0.846 ± 0.004", "197.15 ± 3.16"),
        ("length 200", "skip_lstm", 1e-4): ("0.837 ± 0.006", "164.65 ± 8.67"),
        ("length 200", "skip_lstm", 1e-3): ("0.811 ± 0.007", "73.85 ± 1.90"),
        ("length 200", "gru", 0.0): ("0.845 ± 0.006", "200.00 ± 0.00"),
        ("length 200", "skip_gru", 0.0): ("0.848 ± 0.002", "200.00 ± 0.00"),
        ("length 200", "skip_gru", 1e-5): ("0.842 ± 0.005", "199.25 ± 1.30"),
        ("length 200", "skip_gru", 1e-4): ("0.834 ± 0.006", "180.97 ± 8.90"),
        ("length 200", "skip_gru", 1e-3): ("0.800 ± 0.007", "106.15 ± 37.92"),
        ("length 400", "lstm", 0.0): ("0.868 ± 0.004", "400.00 ± 0.00"),
        ("length 400", "skip_lstm", 0.0): ("0.866 ± 0.004", "369.70 ± 19.35"),
        ("length 400", "skip_lstm", 1e-5): ("0.865 ± 0.001", "380.62 ± 18.20"),
        ("length 400", "skip_lstm", 1e-4): ("0.862 ± 0.003", "186.30 ± 25.72"),
        ("length 400", "skip_lstm", 1e-3): ("0.836 ± 0.007", "84.22 ± 1.98"),
        ("length 400", "gru", 0.0): ("0.862 ± 0.003", "400.00 ± 0.00"),
        ("length 400", "skip_gru", 0.0): ("0.866 ± 0.002", "399.02 ± 1.69"),
        ("length 400", "skip_gru", 1e-5): ("0.862 ± 0.008", "398.00 ± 2.06"),
        ("length 400", "skip_gru", 1e-4): ("0.853 ± 0.011", "314.30 ± 2.82"),
        ("length 400", "skip_gru", 1e-3): ("0.814 ± 0.005", "99.12 ± 2.69")},
    5: {("", "lstm", 0.0): ("0.671", "250.0", "9.52e11"),
        ("", "skip_lstm", 0.0): ("0.749", "138.9", "5.29e11"),
        ("", "skip_lstm", 1e-5): ("0.757", "24.2", "9.21e10"),
        ("", "skip_lstm", 1e-4): ("0.790", "7.6", "2.89e10"),
        ("", "gru", 0.0): ("0.791", "250.0", "9.51e11"),
        ("", "skip_gru", 0.0): ("0.796", "124.2", "4.73e11"),
        ("", "skip_gru", 1e-5): ("0.792", "29.7", "1.13e11"),
        ("", "skip_gru", 1e-4): ("0.793", "23.7", "9.02e10")},
    6: {("", "lstm", 0.0): ("8.40", "172.9 ± 47.4", "2.65e12"),
        ("", "lstm_pskip0.75", 0.0): ("8.11", "43.3 ± 13.2", "6.63e11"),
        ("", "lstm_pskip0.9", 0.0): ("7.21", "17.2 ± 6.1", "2.65e11"),
        ("", "skip_lstm", 0.0): ("8.32", "172.9 ± 47.4", "2.65e12"),
        ("", "skip_lstm", 1e-4): ("8.61", "172.9 ± 47.4", "2.65e12"),
        ("", "skip_lstm", 1e-3): ("8.32", "41.9 ± 11.3", "6.41e11"),
        ("", "skip_lstm", 1e-2): ("7.86", "17.4 ± 4.4", "2.66e11"),
        ("", "gru", 0.0): ("8.70", "172.9 ± 47.4", "2.65e12"),
        ("", "gru_pskip0.1", 0.0): ("8.94", "155.6 ± 42.9", "2.39e12"),
        ("", "gru_pskip0.4", 0.0): ("8.81", "103.6 ± 29.3", "1.06e12"),
        ("", "gru_pskip0.7", 0.0): ("8.42", "51.9 ± 15.4", "7.95e11"),
        ("", "gru_pskip0.9", 0.0): ("7.09", "17.3 ± 6.3", "2.65e11"),
        ("", "skip_gru", 0.0): ("8.94", "159.9 ± 46.9", "2.45e12"),
        ("", "skip_gru", 1e-4): ("8.76", "100.8 ± 28.1", "1.54e12"),
        ("", "skip_gru", 1e-3): ("8.68", "54.2 ± 16.2", "8.29e11"),
        ("", "skip_gru", 1e-2): ("7.95", "18.4 ± 5.1", "2.82e11")},
}


def row_config(table: int, variant: str, row: Row, args: argparse.Namespace
               ) -> ml_collections.ConfigDict:
    spec = TABLES[table]
    if REPOSITORY not in sys.path:  # configs/ is found from any working directory
        sys.path.append(REPOSITORY)
    config = importlib.import_module(f"configs.{spec.task}").get_config()
    config.model.cell = row.model
    config.model.p_skip = row.p_skip
    config.costs_per_sample = row.costs
    config.num_seeds = args.num_seeds
    for key, value in spec.variants[variant].items():
        config.data[key] = value
    for key, value in spec.overrides.items():
        configuration.assign(config, key, value)
    if args.num_train_steps:
        config.num_train_steps = args.num_train_steps
    if args.learning_rate:
        config.learning_rate = args.learning_rate
    if args.data_dir:
        config.data.dir = args.data_dir
    for assignment in args.set:
        set_value(config, assignment)
    return config


# How ``--config.<key>=value`` parses a value for a field of each type (ml_collections'
# config_flags); a string is taken as it is, without quotes.
PARSERS = {bool: flags.BooleanParser(), int: flags.IntegerParser(), float: flags.FloatParser(),
           tuple: tuple_parser.TupleParser(), str: flags.ArgumentParser()}
EXPECTED = {bool: "true or false", int: "an int", float: "a float",
            tuple: "a tuple, e.g. '(0.0, 1e-4)'"}


def set_value(config: ml_collections.ConfigDict, assignment: str) -> None:
    """``--set=key=value``: ``value`` parsed as ``train.py --config.key=value`` parses it, by the
    field's type (``--set=model.gradient=reference_code``, ``--set='costs_per_sample=(0, 1e-4)'``;
    a field that is None takes a Python literal or else the string), then
    :func:`configuration.assign`. Raises :class:`configuration.ConfigError`."""
    key, equals, text = assignment.partition("=")
    if not equals:
        raise configuration.ConfigError(f"--set={assignment}: expected --set=KEY=VALUE, e.g. "
                                        "--set=eval_every=1000.")
    try:
        old = functools.reduce(lambda node, part: node[part], key.split("."), config)
    except (KeyError, TypeError):
        old = None  # assign names the unknown key
    parser = PARSERS.get(type(old))
    try:
        value = parser.parse(text) if parser else ast.literal_eval(
            {"true": "True", "false": "False"}.get(text, text))
    except (SyntaxError, ValueError) as e:
        if parser:
            raise configuration.ConfigError(
                f"config.{key}={text!r} is invalid: must be {EXPECTED[type(old)]}.") from e
        value = text
    configuration.assign(config, key, value)


def format_rows(table: int, results: list[dict]) -> str:
    """The table in the paper's form, with the paper's numbers and the wall-clock time."""
    spec = TABLES[table]
    solvable = spec.task in ("adding", "frequency")
    scale = 100.0 if spec.metric == "mAP (%)" else 1.0
    variants = any(r["variant"] for r in results)  # the column of tables with variants
    columns = ["variant"] * variants + ["model", "λ", "solved" if solvable else spec.metric,
                                        "state updates", "inference FLOPs", "paper", "runs",
                                        "steps", "wall-clock"]
    lines = [f"| {' | '.join(columns)} |", "|---" * len(columns) + "|"]
    for r in results:
        for row in r["summary"]:
            lam = row["cost_per_sample"]
            if solvable:
                result = f"{row['solved']}/{row['runs']}"
            else:
                metric = {k: scale * v for k, v in row["metric"].items()}
                result = f"{metric['mean']:.3f} ± {metric['std']:.3f}"
            key = "updates_percent" if spec.updates_kind == "% updates" else "updates_mean"
            unit = "%" if key == "updates_percent" else ""
            updates = f"{row[key]['mean']:.1f}{unit} ± {row[key]['std']:.1f}{unit}"
            flops = f"{row['inference_flops']['mean']:.2e}" if "inference_flops" in row else "-"
            paper = " / ".join(PAPER.get(table, {}).get((r["variant"], r["model"], lam), ("-",)))
            cells = [r["variant"]] * variants + [
                _label(r["model"]), f"{lam:g}", result, updates, flops, paper, str(row["runs"]),
                _steps(r, row), f"{r['seconds'] / 60:.1f} min"]
            lines.append(f"| {' | '.join(cells)} |")
    conventions = sorted({r["mask_padding"] for r in results if r.get("mask_padding") is not None})
    if conventions:  # a padded dataset: say how its updates were counted
        lines += ["", ("Rows differ. " if len(conventions) > 1 else "")
                  + " ".join(PADDING_NOTE[c] for c in conventions)]
    return "\n".join(lines)


PADDING_NOTE = {
    False: "State updates count every step, padding included (the paper's convention).",
    True: "State updates count real steps only (padding masked).",
}


def _steps(result: dict, row: dict) -> str:
    """Steps trained, and with ``stop_when_settled`` whether every member of the row settled,
    the run reached its step cap first, or it was stopped before either (a time limit)."""
    steps = f"{result['steps']:,}"
    if row.get("settled") == row["runs"]:
        return f"{steps}, settled"
    if not result.get("stop_when_settled"):
        return steps
    capped = result["steps"] >= result.get("num_train_steps", 0) > 0
    return f"{steps}, {'cap' if capped else 'not settled yet'}"


def _label(name: str) -> str:
    """``lstm_pskip0.5`` -> ``lstm (p_skip = 0.5)``."""
    model, _, p_skip = name.partition("_pskip")
    return f"{model} (p_skip = {p_skip})" if p_skip else model


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in one line (exit 2), as train.py says them."""

    def error(self, message: str):
        self.exit(2, f"reproduce: {message}\n")


# Errors in what was asked (a config value, data, a workdir): one line, exit 2.
USER_ERRORS = (configuration.ConfigError, DataError, trainer.WorkdirError, FileNotFoundError)


def main() -> None:
    tables = "\n".join(
        f"  {n}: {t.task}; rows {', '.join(r.name for r in t.rows)}"
        + (f"; variants {', '.join(_dirname(v) for v in t.variants)}" if len(t.variants) > 1
           else "") for n, t in TABLES.items())
    parser = _Parser(
        prog="python -m skip_rnn.experiments.reproduce", description=__doc__.splitlines()[0],
        epilog=f"Tables:\n{tables}", formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", type=int, choices=sorted(TABLES), required=True,
                        help="which table (listed below)")
    parser.add_argument("--workdir", required=True,
                        help="one subdirectory per row; rerunning resumes")
    parser.add_argument("--num_seeds", type=int, default=4,
                        help="seeds per row, as the paper (default: %(default)s)")
    parser.add_argument("--num_train_steps", type=int, default=0,
                        help="training steps per row (default 0: the config's)")
    parser.add_argument("--learning_rate", type=float, default=0.0,
                        help="Adam's learning rate (default 0: the paper's 1e-4)")
    parser.add_argument("--data_dir", default="",
                        help="config.data.dir for real datasets (default: the config's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any config value, repeatable, written as train.py's "
                        "--config.KEY=VALUE (strings without quotes), e.g. "
                        "--set=eval_every=1000 --set=model.gradient=reference_code")
    parser.add_argument("--models", default="",
                        help="comma-separated subset of the table's rows (default: all)")
    parser.add_argument("--variants", default="",
                        help="comma-separated subset of the table's variants (default: all)")
    parser.add_argument("--collect", action="store_true",
                        help="train nothing: print and write the table from the rows' "
                        "results.json")
    args = parser.parse_args()
    task, variants, rows = TABLES[args.table][:3]
    known_models, known_variants = [r.name for r in rows], [_dirname(v) for v in variants]
    chosen_models = set(args.models.split(",")) if args.models else set(known_models)
    chosen_variants = ({_dirname(v) for v in args.variants.split(",")} if args.variants
                       else set(known_variants))
    for name, chosen, known in (("models", chosen_models, known_models),
                                ("variants", chosen_variants, known_variants)):
        if chosen - set(known):
            parser.error(f"--{name}: unknown {sorted(chosen - set(known))}; "
                         f"table {args.table} has {known}")
    selected = [(variant, row, os.path.join(args.workdir, _dirname(variant), row.name))
                for variant in variants for row in rows
                if row.name in chosen_models and _dirname(variant) in chosen_variants]
    try:
        results = (collect_rows(selected) if args.collect
                   else run_rows(args.table, selected, args))
    except trainer.Interrupted as e:
        print(f"\n{e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except USER_ERRORS as e:
        parser.error(str(e))
    if args.collect and not results:
        parser.error(f"--collect: no row of table {args.table} has a results.json under "
                     f"{args.workdir!r}")
    markdown = format_rows(args.table, results)
    print(markdown)
    if args.collect or not (args.models or args.variants):
        write_table(args.table, task, results, markdown, args.workdir)
    else:  # rows run side by side would overwrite each other's files
        print(f"Rows run separately: `--collect` writes "
              f"{os.path.join(args.workdir, f'table{args.table}')}.*")


def run_rows(table: int, selected: list[tuple[str, Row, str]], args: argparse.Namespace
             ) -> list[dict]:
    """Trains the ``(variant, row, workdir)`` rows one after another; every row's config is
    checked before the first one trains."""
    configs = [row_config(table, variant, row, args) for variant, row, _ in selected]
    for config in configs:
        configuration.check_config(configuration.resolve(config), jax.device_count())
    results = []
    for (variant, row, workdir), config in zip(selected, configs, strict=True):
        name = " ".join(filter(None, (variant, _label(row.name))))
        print(f"== Table {table} {name} λ={row.costs} -> {workdir}")
        results.append(_row_result(variant, row, trainer.train_and_evaluate(config, workdir)))
    return results


def collect_rows(selected: list[tuple[str, Row, str]]) -> list[dict]:
    """The rows' results from their ``results.json``; rows without one are named and left out."""
    results = []
    for variant, row, workdir in selected:
        path = os.path.join(workdir, "results.json")
        if not os.path.isfile(path):
            print(f"-- no {path}: row left out")
            continue
        with open(path) as f:
            results.append(_row_result(variant, row, json.load(f)))
    return results


def _row_result(variant: str, row: Row, result: dict) -> dict:
    return {"variant": variant, "model": row.name, "summary": result["summary"],
            "seconds": result["seconds"], "steps": result["steps"],
            "mask_padding": result["config"]["data"].get("mask_padding"),
            "stop_when_settled": result["config"].get("stop_when_settled"),
            "num_train_steps": result["config"].get("num_train_steps", 0)}


def write_table(table: int, task: str, results: list[dict], markdown: str, workdir: str
                ) -> None:
    """``table<N>.md``, ``.json`` and ``.png`` (test metric against state updates)."""
    with open(os.path.join(workdir, f"table{table}.md"), "w") as f:
        f.write(markdown + "\n")
    with open(os.path.join(workdir, f"table{table}.json"), "w") as f:
        json.dump(results, f, indent=2)
    points = [{**row, "label": " ".join(filter(None, (r["variant"], r["model"],
                                                      f"λ={row['cost_per_sample']:g}")))}
              for r in results for row in r["summary"]]
    figures.tradeoff(os.path.join(workdir, f"table{table}.png"), points,
                     "MSE" if task == "adding" else "accuracy",
                     f"Table {table} ({task}): mean ± std over seeds")


def _dirname(variant: str) -> str:
    """A variant as ``--variants`` and the workdir spell it: ``length 200`` -> ``length_200``."""
    return variant.replace(" ", "_")


if __name__ == "__main__":
    main()
