"""Reproduces a table of the paper: every row, four seeds each, printed in the paper's form.

    python -m skip_rnn.reproduce --table=1 --workdir=workdirs/table1 [--num_seeds=4]
        [--num_train_steps=N] [--learning_rate=1e-3] [--data_dir=...] [--set=key=value ...]
        [--models=lstm,skip_lstm] [--variants=Ts=1ms] [--collect]

Each model of the table is one population run (all its λ x seeds in one jitted step, see
:mod:`skip_rnn.trainer`) in ``<workdir>/<variant>/<model>``; rerunning resumes. The table is
printed and written to ``<workdir>/table<N>.md`` and ``.json``, next to the paper's numbers,
and drawn as test metric against state updates in ``<workdir>/table<N>.png``.
Rows can also run as separate commands (``--models``, ``--variants``), which print their rows
only; ``--collect`` then prints and writes the whole table from the rows' ``results.json``.
On one GPU run them one after another: processes side by side each run ≈10x slower.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os

import ml_collections

from skip_rnn import figures, trainer

# table: (task, variants (config.data overrides), rows (model, λs), what the paper reports)
TABLES = {
    1: ("adding", {"": {}},
        [("lstm", (0.0,)), ("skip_lstm", (0.0, 1e-5)), ("gru", (0.0,)),
         ("skip_gru", (0.0, 1e-5))], "% updates"),
    2: ("frequency", {"Ts=1ms": {"sampling_period_ms": 1.0},
                      "Ts=0.5ms": {"sampling_period_ms": 0.5}},
        [("lstm", (0.0,)), ("skip_lstm", (0.0, 1e-5, 1e-4)), ("gru", (0.0,)),
         ("skip_gru", (0.0, 1e-5, 1e-4))], "updates"),
    3: ("mnist", {"": {}},
        [("lstm", (0.0,)), ("skip_lstm", (1e-4,)), ("gru", (0.0,)), ("skip_gru", (1e-4,))],
        "updates"),
    4: ("imdb", {"length 200": {"seq_length": 200}, "length 400": {"seq_length": 400}},
        [("lstm", (0.0,)), ("skip_lstm", (0.0, 1e-5, 1e-4, 1e-3)), ("gru", (0.0,)),
         ("skip_gru", (0.0, 1e-5, 1e-4, 1e-3))], "updates"),
    5: ("ucf101", {"": {}},
        [("lstm", (0.0,)), ("skip_lstm", (0.0, 1e-5, 1e-4)), ("gru", (0.0,)),
         ("skip_gru", (0.0, 1e-5, 1e-4))], "updates"),
}

# The paper's numbers: (variant, model, λ) -> (task result, state updates).
PAPER = {
    1: {("", "lstm", 0.0): ("Yes", "100.0% ± 0.0%"),
        ("", "skip_lstm", 0.0): ("Yes", "81.1% ± 3.6%"),
        ("", "skip_lstm", 1e-5): ("Yes", "53.9% ± 2.1%"),
        ("", "gru", 0.0): ("Yes", "100.0% ± 0.0%"),
        ("", "skip_gru", 0.0): ("Yes", "97.9% ± 3.2%"),
        ("", "skip_gru", 1e-5): ("Yes", "50.7% ± 2.6%")},
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
    3: {("", "lstm", 0.0): ("0.910 ± 0.045", "784.00 ± 0.00"),
        ("", "skip_lstm", 1e-4): ("0.973 ± 0.002", "379.38 ± 33.09"),
        ("", "gru", 0.0): ("0.968 ± 0.013", "784.00 ± 0.00"),
        ("", "skip_gru", 1e-4): ("0.976 ± 0.003", "392.62 ± 26.48")},
    5: {("", "lstm", 0.0): ("0.671", "250.0"), ("", "skip_lstm", 0.0): ("0.749", "138.9"),
        ("", "skip_lstm", 1e-5): ("0.757", "24.2"), ("", "skip_lstm", 1e-4): ("0.790", "7.6"),
        ("", "gru", 0.0): ("0.791", "250.0"), ("", "skip_gru", 0.0): ("0.796", "124.2"),
        ("", "skip_gru", 1e-5): ("0.792", "29.7"), ("", "skip_gru", 1e-4): ("0.793", "23.7")},
}


def row_config(table: int, variant: str, model: str, costs: tuple[float, ...],
               args: argparse.Namespace) -> ml_collections.ConfigDict:
    task, variants, _, _ = TABLES[table]
    config = importlib.import_module(f"configs.{task}").get_config()
    config.model.cell = model
    config.costs_per_sample = costs
    config.num_seeds = args.num_seeds
    for key, value in variants[variant].items():
        config.data[key] = value
    if args.num_train_steps:
        config.num_train_steps = args.num_train_steps
    if args.learning_rate:
        config.learning_rate = args.learning_rate
    if args.data_dir:
        config.data.dir = args.data_dir
    for assignment in args.set:
        key, value = assignment.split("=", 1)
        *parents, last = key.split(".")
        node = config
        for p in parents:
            node = node[p]
        node[last] = type(node[last])(json.loads(value))
    return config


def format_rows(table: int, results: list[dict]) -> str:
    """The table in the paper's form, with the paper's numbers and the wall-clock time."""
    task, _, _, updates_kind = TABLES[table]
    regression_or_solved = task in ("adding", "frequency")
    lines = [f"| variant | model | λ | {'solved' if regression_or_solved else 'accuracy'} "
             f"| state updates | paper | runs | steps | wall-clock |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for row in r["summary"]:
            lam = row["cost_per_sample"]
            if regression_or_solved:
                result = f"{row['solved']}/{row['runs']}"
            else:
                result = f"{row['metric']['mean']:.3f} ± {row['metric']['std']:.3f}"
            key = "updates_percent" if updates_kind == "% updates" else "updates_mean"
            unit = "%" if key == "updates_percent" else ""
            updates = f"{row[key]['mean']:.1f}{unit} ± {row[key]['std']:.1f}{unit}"
            paper = " / ".join(PAPER.get(table, {}).get((r["variant"], r["model"], lam), ("-",)))
            lines.append(f"| {r['variant']} | {r['model']} | {lam:g} | {result} | {updates} "
                         f"| {paper} | {row['runs']} | {r['steps']:,} "
                         f"| {r['seconds'] / 60:.1f} min |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=int, choices=sorted(TABLES), required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--num_seeds", type=int, default=4)
    parser.add_argument("--num_train_steps", type=int, default=0, help="0: the config's")
    parser.add_argument("--learning_rate", type=float, default=0.0, help="0: the paper's")
    parser.add_argument("--data_dir", default="", help="config.data.dir for real datasets")
    parser.add_argument("--set", action="append", default=[],
                        help="any config value, e.g. --set=eval_every=1000 (JSON values)")
    parser.add_argument("--models", default="", help="comma-separated subset of the rows")
    parser.add_argument("--variants", default="", help="comma-separated subset of the variants")
    parser.add_argument("--collect", action="store_true",
                        help="train nothing: print the table from the rows' results.json")
    args = parser.parse_args()
    task, variants, rows, _ = TABLES[args.table]
    known_models, known_variants = [m for m, _ in rows], [_dirname(v) for v in variants]
    chosen_models = set(args.models.split(",")) if args.models else set(known_models)
    chosen_variants = ({_dirname(v) for v in args.variants.split(",")} if args.variants
                       else set(known_variants))
    for name, chosen, known in (("models", chosen_models, known_models),
                                ("variants", chosen_variants, known_variants)):
        if chosen - set(known):
            parser.error(f"--{name}: unknown {sorted(chosen - set(known))}; "
                         f"table {args.table} has {known}")
    results = []
    for variant in variants:
        for model, costs in rows:
            if model not in chosen_models or _dirname(variant) not in chosen_variants:
                continue
            workdir = os.path.join(args.workdir, _dirname(variant) or ".", model)
            if args.collect:
                path = os.path.join(workdir, "results.json")
                if not os.path.isfile(path):
                    print(f"-- no {path}: row left out")
                    continue
                with open(path) as f:
                    result = json.load(f)
            else:
                print(f"== Table {args.table} {variant} {model} λ={costs} -> {workdir}")
                result = trainer.train_and_evaluate(
                    row_config(args.table, variant, model, costs, args), workdir)
            results.append({"variant": variant, "model": model, "summary": result["summary"],
                            "seconds": result["seconds"], "steps": result["steps"]})
    if args.collect and not results:
        parser.error(f"--collect: no row of table {args.table} has a results.json under "
                     f"{args.workdir!r}")
    markdown = format_rows(args.table, results)
    print(markdown)
    if args.collect or not (args.models or args.variants):
        write_table(args.table, task, results, markdown, args.workdir)
    else:  # rows run side by side would overwrite each other's files
        print(f"Rows run separately: `--collect` writes {args.workdir}/table{args.table}.*")


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
