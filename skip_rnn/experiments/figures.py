"""Figures of used vs skipped samples, written to the workdir at the end of training.

- ``used_samples.png`` (adding, frequency; the paper's Fig. 2): a few held-out sequences,
  red = used (state updated), blue = skipped.
- ``used_pixels.png`` (MNIST; Fig. 4): digits with used pixels red and skipped ones blue.
- ``updates.png`` (every task): the update gates ``u_t`` of held-out sequences as a raster.
- ``curves.png`` (every task): validation metric and % of state updates over training, one
  line per population member (from ``metrics.jsonl``; a dot while it has one evaluation).

:func:`tradeoff` draws a whole table (``python -m skip_rnn.experiments.reproduce``): test metric
against state updates, mean ± std over seeds, one point per model and λ.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from skip_rnn.experiments import models, steps  # noqa: E402
from skip_rnn.experiments.metrics import metric_name, read_metrics  # noqa: E402


def write_all(workdir: str, config, task, cell, params, source: str = "",
              seed: int | None = None) -> list[str]:
    """Draws the task's figures for ``config.num_figure_examples`` validation sequences;
    ``source`` says which parameters drew them (e.g. "best checkpoint, step 14,000"); random
    gates draw as the evaluation's first batch does for the member of ``seed`` (default
    ``config.seed``)."""
    n = config.num_figure_examples
    if n <= 0:
        return []
    batch = task.eval_sets["validation"].slice(0, n)
    seed = config.seed if seed is None else seed
    key = steps.eval_key(seed, 0) if models.stochastic(config.model) else None
    _, out = models.apply(cell, params, batch.inputs, batch.lengths, key=key)
    u = np.asarray(out.u)
    title = f"{config.task}, {source}" if source else config.task
    paths = [updates_raster(os.path.join(workdir, "updates.png"), u, title, batch.lengths),
             curves(os.path.join(workdir, "curves.png"), os.path.join(workdir, "metrics.jsonl"),
                    metric_name(task))]
    if config.task in ("adding", "frequency"):
        values = np.asarray(batch.inputs)[..., 0]
        markers = np.asarray(batch.inputs)[..., 1] if config.task == "adding" else None
        paths.append(used_samples(os.path.join(workdir, "used_samples.png"), values, u, markers,
                                  title))
    if config.task == "mnist":
        paths.append(used_pixels(os.path.join(workdir, "used_pixels.png"),
                                 np.asarray(batch.inputs)[..., 0], u, title))
    return paths


def used_samples(path: str, values: np.ndarray, u: np.ndarray, markers=None, title: str = ""
                 ) -> str:
    """Fig. 2: each sequence's values over time, red where used and blue where skipped; dotted
    lines mark the adding task's markers."""
    fig, axes = plt.subplots(len(values), 1, figsize=(8, 1.6 * len(values) + 0.4),
                             squeeze=False)
    for ax, v, used, m in zip(axes[:, 0], values, u, markers if markers is not None
                              else [None] * len(values), strict=True):
        t = np.arange(len(v))
        ax.plot(t, v, color="0.8", lw=0.8, zorder=1)
        ax.scatter(t[used > 0], v[used > 0], c="red", s=10, label="used", zorder=2)
        ax.scatter(t[used == 0], v[used == 0], c="blue", s=10, label="skipped", zorder=2)
        if m is not None:
            for position in np.flatnonzero(m):
                ax.axvline(position, color="k", ls=":", lw=0.8, label="marker")
        ax.set_ylabel(f"{int(used.sum())} of {len(v)}\nused", fontsize=8)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    axes[0, 0].legend(unique.values(), unique.keys(), loc="upper right", fontsize=7, ncol=3)
    axes[0, 0].set_title(f"{title}: used samples" if title else "used samples")
    axes[-1, 0].set_xlabel("time step")
    return _save(fig, path)


def used_pixels(path: str, pixels: np.ndarray, u: np.ndarray, title: str = "") -> str:
    """Fig. 4: 28x28 digits; used pixels red, skipped blue, brightness = intensity."""
    fig, axes = plt.subplots(1, len(pixels), figsize=(2 * len(pixels), 2.5), squeeze=False)
    fig.suptitle(f"{title}: used pixels red, skipped blue" if title
                 else "used pixels red, skipped blue", fontsize=9)
    for ax, p, used in zip(axes[0], pixels, u, strict=True):
        side = int(round(np.sqrt(len(p))))
        rgb = np.zeros((len(p), 3))
        shade = 0.35 + 0.65 * p
        rgb[used > 0, 0] = shade[used > 0]
        rgb[used == 0, 2] = shade[used == 0]
        ax.imshow(rgb.reshape(side, side, 3))
        ax.set_title(f"{int(used.sum())} used", fontsize=8)
        ax.axis("off")
    return _save(fig, path)


def updates_raster(path: str, u: np.ndarray, title: str, lengths: np.ndarray | None = None
                   ) -> str:
    """Each sequence's update gates ``u`` ``[B, T]`` over time, with a colour key and the % of
    updates; with ``lengths`` ``[B]``, the padding past each length grey and left out of the %
    (as the evaluation counts masked padding)."""
    valid = np.ones(u.shape, bool) if lengths is None else (
        np.arange(u.shape[1]) < np.asarray(lengths)[:, None])
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(u) + 1.2))
    cmap = matplotlib.colormaps["coolwarm"].with_extremes(bad="lightgrey")
    image = ax.imshow(np.where(valid, u, np.nan), aspect="auto", cmap=cmap, vmin=0, vmax=1,
                      interpolation="nearest")
    key = fig.colorbar(image, ax=ax, ticks=[0, 1], fraction=0.05)
    key.ax.set_yticklabels(["skip", "update"])
    ax.set_xlabel("time step")
    ax.set_ylabel("sequence")
    padding = ", padding grey" if not valid.all() else ""
    ax.set_title(f"{title}: {100 * u[valid].mean():.1f}% updates{padding}")
    return _save(fig, path)


def curves(path: str, metrics_path: str, metric_name: str) -> str:
    """Validation metric and % of updates against the training step, per member."""
    return _save(curves_figure(metrics_path, metric_name), path)


def curves_figure(metrics_path: str, metric_name: str):
    """:func:`curves`'s figure; a member evaluated once is a marker; a run not yet evaluated
    says so."""
    runs: dict[tuple, list[dict]] = {}
    for record in read_metrics(metrics_path):
        if record["split"] == "validation":
            key = (record.get("seed"), record.get("cost_per_sample"))
            runs.setdefault(key, []).append(record)
    fig, (ax_metric, ax_updates) = plt.subplots(1, 2, figsize=(10, 3.5))
    for (seed, cost), records in runs.items():
        steps = [r["step"] for r in records]
        style = {"label": f"seed {seed}, λ={cost}", "marker": "o" if len(steps) == 1 else None}
        ax_metric.plot(steps, [r["metric"] for r in records], **style)
        ax_updates.plot(steps, [r["updates_percent"] for r in records], **style)
    if metric_name == "MSE":
        _log_decades(ax_metric, [r["metric"] for records in runs.values() for r in records])
    ax_metric.set(xlabel="training step", ylabel=f"validation {metric_name}")
    ax_updates.set(xlabel="training step", ylabel="state updates (%)", ylim=(0, 105))
    for ax in (ax_metric, ax_updates):
        ax.set_xlim(left=0)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    if runs:
        ax_updates.legend(fontsize=7)
    else:
        for ax in (ax_metric, ax_updates):
            ax.text(0.5, 0.5, "no evaluation yet", ha="center", va="center",
                    transform=ax.transAxes)
    return fig


def _log_decades(ax, values: list[float]) -> None:
    """A log-scale y axis over whole decades around ``values``, none on an edge: a range
    narrower than a decade would label its few ticks with one rounded number."""
    ax.set_yscale("log")
    positive = np.log10([v for v in values if v > 0])
    if positive.size:
        ax.set_ylim(10.0 ** np.floor(positive.min() - 0.05),
                    10.0 ** (np.floor(positive.max() + 0.05) + 1))


def compare_runs(path: str, runs: dict[str, str], metric_name: str,
                 cost_per_sample: float | None = None) -> str:
    """Validation metric and % updates against the training step of several runs (``runs``:
    label -> ``metrics.jsonl``), e.g. two learning-rate schedules: each run's member 0, or with
    ``cost_per_sample`` every member at that λ (one colour per run, one line per seed), e.g. the
    λ = 0 members of two setups."""
    fig, (ax_metric, ax_updates) = plt.subplots(1, 2, figsize=(10, 3.5))
    values = []
    for run_index, (label, metrics_path) in enumerate(runs.items()):
        members: dict[int, list[dict]] = {}
        for r in read_metrics(metrics_path):
            chosen = (r.get("member", 0) == 0 if cost_per_sample is None
                      else r.get("cost_per_sample") == cost_per_sample)
            if r["split"] == "validation" and chosen:
                members.setdefault(r.get("seed"), []).append(r)
        if not members:
            raise ValueError(f"{metrics_path}: no validation of "
                             + ("member 0" if cost_per_sample is None
                                else f"a member with λ = {cost_per_sample:g}") + ".")
        for i, records in enumerate(members.values()):
            steps = [r["step"] for r in records]
            style = {"color": f"C{run_index % 10}", "label": label if i == 0 else None,
                     "marker": "o" if len(steps) == 1 or cost_per_sample is None else None}
            ax_metric.plot(steps, [r["metric"] for r in records], **style)
            ax_updates.plot(steps, [r["updates_percent"] for r in records], **style)
            values += [r["metric"] for r in records]
    if metric_name == "MSE":
        _log_decades(ax_metric, values)
    ax_metric.set(xlabel="training step", ylabel=f"validation {metric_name}")
    ax_updates.set(xlabel="training step", ylabel="state updates (%)", ylim=(0, 105))
    ax_metric.legend(fontsize=7)
    return _save(fig, path)



def main() -> None:
    """``python -m skip_rnn.experiments.figures OUT.png METRIC LABEL=metrics.jsonl ...
    [--cost_per_sample=λ]``: draws :func:`compare_runs`."""
    import sys

    args = [a for a in sys.argv[1:] if not a.startswith("--cost_per_sample=")]
    costs = [float(a.partition("=")[2]) for a in sys.argv[1:]
             if a.startswith("--cost_per_sample=")]
    if len(args) < 3 or any("=" not in a for a in args[2:]) or len(costs) > 1:
        sys.exit("usage: python -m skip_rnn.experiments.figures OUT.png METRIC "
                 "LABEL=metrics.jsonl ... [--cost_per_sample=λ]")
    runs = dict(a.split("=", 1) for a in args[2:])
    print(compare_runs(args[0], runs, args[1], costs[0] if costs else None))


def tradeoff(path: str, rows: list[dict], metric_name: str, title: str) -> str:
    """Test metric against % of state updates, one error-barred point per (variant, model, λ).

    ``rows``: ``{"label": str, "metric": {"mean", "std"}, "updates_percent": {"mean", "std"}}``.
    """
    fig, ax = plt.subplots(figsize=(6, 4))
    for row in rows:
        x, y = row["updates_percent"], row["metric"]
        ax.errorbar(x["mean"], y["mean"], xerr=x["std"], yerr=y["std"], fmt="o", capsize=3,
                    label=row["label"])
    if metric_name == "MSE":
        _log_decades(ax, [row["metric"]["mean"] + sign * row["metric"]["std"] for row in rows
                          for sign in (-1, 0, 1)])
    ax.set(xlabel="state updates (%, test)", ylabel=f"test {metric_name}", xlim=(0, 105),
           title=title)
    ax.legend(fontsize=7)
    return _save(fig, path)


def _save(fig, path: str) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
