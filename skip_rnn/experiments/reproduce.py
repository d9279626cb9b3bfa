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
then prints and writes the whole table from the rows' ``results.json`` (with ``--models`` or
``--variants``, it prints those rows only).
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

import jax
import ml_collections
from absl import flags
from ml_collections.config_flags import tuple_parser

from skip_rnn.experiments import allocator, configuration, figures, records, trainer
from skip_rnn.experiments.checkpoints import Checkpoints
from skip_rnn.experiments.data.sources import DataError
from skip_rnn.experiments.tables import PAPER, TABLES, Row

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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
        if assignment.partition("=")[0] == "cost_per_sample":  # the row's costs_per_sample wins
            raise configuration.ConfigError(
                f"--set={assignment}: a table's row trains its λ list, costs_per_sample; "
                "set that instead, e.g. --set='costs_per_sample=(0.0,)'.")
        set_value(config, assignment)
    if not config.costs_per_sample:
        raise configuration.ConfigError("--set=costs_per_sample=(): a row needs at least one λ.")
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
    """The table in the paper's form, with the paper's numbers and the wall-clock time. "state
    updates" is each member's best checkpoint on the test set (the solved validation with the
    fewest updates where the task has a solved rule), as the paper reports it; "updates, last
    eval" the % updates of each member's last validation, where training left the rate."""
    spec = TABLES[table]
    solvable = spec.task in ("adding", "frequency")
    scale = 100.0 if spec.metric == "mAP (%)" else 1.0
    variants = any(r["variant"] for r in results)  # the column of tables with variants
    columns = ["variant"] * variants + ["model", "λ", "solved" if solvable else spec.metric,
                                        "state updates", "updates, last eval", "inference FLOPs",
                                        "paper", "runs", "steps", "wall-clock"]
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
            last = row.get("last_updates_percent")
            last = f"{last['mean']:.1f}% ± {last['std']:.1f}%" if last else "-"
            flops = f"{row['inference_flops']['mean']:.2e}" if "inference_flops" in row else "-"
            paper = " / ".join(PAPER.get(table, {}).get((r["variant"], r["model"], lam), ("-",)))
            cells = [r["variant"]] * variants + [
                _label(r["model"]), f"{lam:g}", result, updates, last, flops, paper,
                str(row["runs"]), _steps(r, row), f"{r['seconds'] / 60:.1f} min"]
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
    if not result.get("stop_when_settled"):
        return steps
    if row.get("settled") == row["runs"]:
        return f"{steps}, settled"
    capped = result["steps"] >= result.get("total_steps", 0) > 0
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
    except trainer.RUN_ERRORS as e:
        trainer.exit_on_run_error("reproduce", e)
    if args.collect and not results:
        parser.error(f"--collect: no row of table {args.table} has a results.json under "
                     f"{args.workdir!r}")
    markdown = format_rows(args.table, results)
    print(markdown)
    table_files = f"{os.path.join(args.workdir, f'table{args.table}')}.*"
    if not (args.models or args.variants):
        write_table(args.table, task, results, markdown, args.workdir)
    elif args.collect:  # a subset would overwrite the whole table
        print(f"Some rows only: printed, not written; `--collect` alone writes {table_files}")
    else:  # rows run side by side would overwrite each other's files
        print(f"Rows run separately: `--collect` writes {table_files}")


def run_rows(table: int, selected: list[tuple[str, Row, str]], args: argparse.Namespace
             ) -> list[dict]:
    """Trains the ``(variant, row, workdir)`` rows one after another; every row's config is
    checked, and so is the run its workdir holds (that it would resume), before the first one
    trains."""
    configs = [row_config(table, variant, row, args) for variant, row, _ in selected]
    for config, (_, _, workdir) in zip(configs, selected, strict=True):
        configuration.check_config(configuration.resolve(config), jax.device_count())
        if os.path.isdir(workdir):
            checkpoints = Checkpoints(workdir)
            try:
                checkpoints.check_config(configuration.resolve(config))
            finally:
                checkpoints.close()
    results = []
    for (variant, row, workdir), config in zip(selected, configs, strict=True):
        name = " ".join(filter(None, (variant, _label(row.name))))
        print(f"== Table {table} {name} λ={tuple(config.costs_per_sample)} -> {workdir}")
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
            result = json.load(f)
        try:
            results.append(_row_result(variant, row, result))
        except configuration.ConfigError:
            print(f"-- {path} was written by an earlier version of skip-rnn: row left out "
                  "(train the row again to include it)")
    return results


def _row_result(variant: str, row: Row, result: dict) -> dict:
    """A row of the table from its run's ``results.json``, summarized again from the members
    (so that a row summarized before a column was added gets it). Raises
    :class:`configuration.ConfigError` for a record of an earlier version."""
    members = records.RunRecord.from_json(result, "results.json").members
    return {"variant": variant, "model": row.name, "summary": records.summarize(members),
            "seconds": result["seconds"], "steps": result["steps"],
            "mask_padding": result["config"]["data"].get("mask_padding"),
            "stop_when_settled": result["config"].get("stop_when_settled"),
            "total_steps": result.get("total_steps", result["config"].get("num_train_steps", 0))}


def write_table(table: int, task: str, results: list[dict], markdown: str, workdir: str
                ) -> None:
    """``table<N>.md``, ``.json`` and ``.png`` (test metric against state updates)."""
    with open(os.path.join(workdir, f"table{table}.md"), "w") as f:
        f.write(markdown + "\n")
    with open(os.path.join(workdir, f"table{table}.json"), "w") as f:
        json.dump(results, f, indent=2)
    spec = TABLES[table]
    scale = 100.0 if spec.metric == "mAP (%)" else 1.0  # as format_rows prints it
    points = [{**row, "metric": {k: scale * v for k, v in row["metric"].items()},
               "label": " ".join(filter(None, (r["variant"], r["model"],
                                               f"λ={row['cost_per_sample']:g}")))}
              for r in results for row in r["summary"]]
    figures.tradeoff(os.path.join(workdir, f"table{table}.png"), points,
                     "MSE" if task == "adding" else spec.metric,
                     f"Table {table} ({task}): mean ± std over seeds")


def _dirname(variant: str) -> str:
    """A variant as ``--variants`` and the workdir spell it: ``length 200`` -> ``length_200``."""
    return variant.replace(" ", "_")


if __name__ == "__main__":
    allocator.reexec()  # under a caching allocator on a Linux CPU
    main()
