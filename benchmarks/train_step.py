"""Training-step speed: our cells vs Flax's own, side by side in one process.

One jitted step = ``value_and_grad`` of the loss (mean squared last output, plus the budget
loss for skip cells) and the Optax clip + Adam update. For each shape, every model is compiled
and warmed up, then the models are timed in alternation, ``--repeats`` rounds; medians quoted.
``skip(from_linen(OptimizedLSTMCell))`` is Flax's cell through :func:`skip_rnn.from_linen`
(learning ``s_0``, as ours does); the adapter should cost at most 1.05x ``skip(lstm)`` on the CPU.

``--save_dots`` adds our skip LSTM and skip GRU with each step under ``jax.checkpoint``
saving only its matrix products (the backward pass recomputes the elementwise rest): fewer
stacked residuals for more arithmetic.

``--dtype=bfloat16`` computes every row in bfloat16 (parameters float32, as Flax's
``param_dtype``). On an NVIDIA GPU a float32 run adds the anchor row ``cudnn LSTM``: the cuDNN
LSTM of ``jax.experimental.rnn``, the fastest plain LSTM a JAX user has there (float32 only;
its lowering exists for CUDA and ROCm only, so it has no row on the CPU).

``--scan_unroll=1,2,4,8`` times instead our skip LSTM with ``sr.unroll(..., unroll=k)`` for each
``k`` (default shapes: adding and sMNIST), each compared with the first ``k``.

FLOPs per step (matrix products only; backward = 2x forward), summed over layers ``l`` with
input size ``F_l`` (``F`` for the first layer, ``H`` above) and ``G`` gates (LSTM 4, GRU 3):
``3 · T · 2 · B · (F_l + H) · G·H``.

    python benchmarks/train_step.py [--shapes=adding,smnist,imdb,ucf101] [--repeats=5]
    python benchmarks/train_step.py --scan_unroll=1,2,4,8 [--shapes=adding,smnist]
    python benchmarks/train_step.py --models='skip(lstm),OptimizedLSTMCell'  # rows naming these
    python benchmarks/train_step.py --processes=5  # five fresh processes, medians of each's medians
    python benchmarks/train_step.py --save_dots --models='skip(gru),GRUCell'
    python benchmarks/train_step.py --dtype=bfloat16 --shapes=adding,smnist

On the 2-core CPU VM of BENCHMARKS.md, the same step compiled again in a fresh process moves by
10-30% against Flax's, more than within one process; ``--processes`` quotes the medians over
fresh processes (step and compile times), with the range of the ratio.

It runs under a caching allocator (:mod:`skip_rnn.experiments.allocator`);
``SKIP_RNN_MALLOC=system`` times it with glibc's (``benchmarks/allocator.py`` compares them).
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import skip_rnn as sr
from skip_rnn.experiments import allocator

# name: (B, T, F, H, layers); UCF-101 at B=32: B=256 takes ~20 s a step on 2 cores.
SHAPES = {
    "adding": (256, 50, 2, 110, 1),
    "smnist": (256, 784, 1, 110, 1),
    "imdb": (256, 400, 300, 128, 1),
    "ucf101": (32, 250, 2048, 512, 2),
}


LAYERS = {
    "lstm": lambda hidden, dtype: sr.lstm(hidden, dtype=dtype),
    "gru": lambda hidden, dtype: sr.gru(hidden, dtype=dtype),
    "from_linen(OptimizedLSTMCell)": lambda hidden, dtype: sr.from_linen(
        nn.OptimizedLSTMCell(hidden, dtype=dtype), learned_initial_state=True),
}


def ours(kind: str, hidden: int, layers: int, skip: bool, unroll: int = 1,
         save_dots: bool = False, dtype: jnp.dtype = jnp.float32):
    """(init, loss) for our cell computing in ``dtype``; ``layers > 1`` stacks, the gate
    reading the top layer; ``unroll`` time steps per iteration of the scan; ``save_dots``: each
    step under ``jax.checkpoint``, keeping only its matrix products for the backward pass."""
    cells = [LAYERS[kind](hidden, dtype) for _ in range(layers)]
    cell = cells[0] if layers == 1 else sr.stack(cells)
    cell = sr.skip(cell) if skip else cell
    if save_dots:
        policy = jax.checkpoint_policies.dots_with_no_batch_dims_saveable
        cell = cell._replace(step=jax.checkpoint(cell.step, policy=policy))

    def loss(params, xs):
        final_state, out = sr.unroll(cell, params, xs, unroll=unroll)
        task = jnp.mean(jnp.square(cell.output(final_state)))
        return task + (sr.budget_loss(out.u, 1e-4) if skip else 0.0)

    return lambda key, xs: cell.init(key, xs.shape[-1]), loss


def flax_reference(kind: str, hidden: int, layers: int, dtype: jnp.dtype = jnp.float32):
    """(init, loss) for Flax's ``nn.RNN(OptimizedLSTMCell | GRUCell)``, stacked ``layers``,
    computing in ``dtype``."""
    cell_type = {"lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell}[kind]
    model = nn.Sequential([nn.RNN(cell_type(hidden, dtype=dtype)) for _ in range(layers)])

    def loss(params, xs):
        return jnp.mean(jnp.square(model.apply(params, xs)[:, -1]))

    return model.init, loss


def flops(B: int, T: int, F: int, H: int, layers: int, gates: int) -> float:
    return sum(3 * T * 2 * B * ((F if i == 0 else H) + H) * gates * H for i in range(layers))


def train_step_fn(loss: Callable, tx: optax.GradientTransformation):
    @jax.jit
    def step(params, opt_state, xs):
        value, grads = jax.value_and_grad(loss)(params, xs)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return step


def cudnn_reference(hidden: int):
    """(init, loss) for the cuDNN LSTM of ``jax.experimental.rnn`` (one layer, float32; its
    weights one flat vector, ``h_0 = c_0 = 0``); lowers on CUDA and ROCm only."""
    from jax.experimental import rnn

    def init(key, xs):
        return rnn.init_lstm_weight(key, xs.shape[-1], hidden, 1, False)

    def loss(weights, xs):
        B, T, F = xs.shape
        zeros = jnp.zeros((1, B, hidden), xs.dtype)
        lengths = jnp.full((B,), T, jnp.int32)
        y, _, _ = rnn.lstm(xs, zeros, zeros, weights, lengths, F, hidden, 1, 0.0, False)
        return jnp.mean(jnp.square(y[:, -1]))

    return init, loss


def models(H: int, layers: int, save_dots: bool = False,
           dtype: jnp.dtype = jnp.float32) -> dict:
    stack = "2-layer " if layers > 1 else ""
    mine = functools.partial(ours, hidden=H, layers=layers, dtype=dtype)
    rows = {
        f"ours {stack}lstm": (mine("lstm", skip=False), "lstm"),
        f"ours {stack}skip(lstm)": (mine("lstm", skip=True), "lstm"),
        f"ours {stack}skip(from_linen(OptimizedLSTMCell))": (
            mine("from_linen(OptimizedLSTMCell)", skip=True), "lstm"),
        f"flax {stack}OptimizedLSTMCell": (flax_reference("lstm", H, layers, dtype), "lstm"),
        f"ours {stack}gru": (mine("gru", skip=False), "gru"),
        f"ours {stack}skip(gru)": (mine("gru", skip=True), "gru"),
        f"flax {stack}GRUCell": (flax_reference("gru", H, layers, dtype), "gru"),
    }
    if layers == 1 and dtype == jnp.float32 and jax.default_backend() == "gpu":
        rows["cudnn LSTM"] = (cudnn_reference(H), "lstm")
    if save_dots:
        for kind in ("lstm", "gru"):
            rows[f"ours {stack}skip({kind}), dots saved"] = (
                mine(kind, skip=True, save_dots=True), kind)
    if layers == 1:
        rows["ours 2-layer skip(stack lstm)"] = (
            ours("lstm", H, 2, True, dtype=dtype), "lstm2")
    return rows


def unroll_models(H: int, layers: int, unrolls: list[int]) -> dict:
    """Our skip LSTM with each scan unroll in ``unrolls``."""
    stack = "2-layer " if layers > 1 else ""
    return {f"ours {stack}skip(lstm), unroll={k}": (ours("lstm", H, layers, True, k), "lstm")
            for k in unrolls}


def flax_baseline(name: str, names: list[str]) -> str | None:
    """The Flax row that row ``name`` is compared with: same cell and depth (None: none)."""
    kind = "GRUCell" if "gru" in name.lower() else "OptimizedLSTMCell"
    reference = next((n for n in names if n.startswith("flax") and kind in n), None)
    same_depth = reference is not None and ("2-layer" in name) == ("2-layer" in reference)
    return reference if same_depth else None


def measure(shape: str, rows: dict, tx: optax.GradientTransformation, repeats: int) -> dict:
    """Compiles and warms up every row at ``shape``, then times them in alternation, ``repeats``
    rounds: per row its median seconds, compile seconds, XLA temporaries (MB) and FLOPs."""
    B, T, F, H, layers = SHAPES[shape]
    xs = jax.random.normal(jax.random.key(0), (B, T, F))
    compiled, stats = {}, {}
    for name, ((init, loss), kind) in rows.items():
        params = init(jax.random.key(1), xs)
        opt_state = tx.init(params)
        start = time.perf_counter()
        executable = train_step_fn(loss, tx).lower(params, opt_state, xs).compile()
        compile_s = time.perf_counter() - start
        memory = executable.memory_analysis()
        temp_mb = memory.temp_size_in_bytes / 2**20 if memory is not None else float("nan")
        jax.block_until_ready(executable(params, opt_state, xs))  # warm-up
        n_layers, gates = (2, 4) if kind == "lstm2" else (layers, 4 if kind == "lstm" else 3)
        compiled[name] = (executable, params, opt_state)
        stats[name] = {"compile": compile_s, "temp": temp_mb, "times": [],
                       "flops": flops(B, T, F, H, n_layers, gates)}
    for _ in range(repeats):  # alternate the models
        for name, (executable, params, opt_state) in compiled.items():
            start = time.perf_counter()
            jax.block_until_ready(executable(params, opt_state, xs))
            stats[name]["times"].append(time.perf_counter() - start)
    return {name: {"seconds": float(np.median(s.pop("times"))), **s} for name, s in stats.items()}


def in_processes(args: argparse.Namespace, shapes: list[str]) -> list[dict]:
    """This benchmark with ``args`` at ``shapes``, run ``args.processes`` times, each in a fresh
    process (one after the other): each process's measurements, ``{shape: {row: measure()'s
    stats}}``."""
    argv = [f"--shapes={','.join(shapes)}", f"--repeats={args.repeats}",
            f"--models={args.models}", f"--scan_unroll={args.scan_unroll}", "--json"]
    argv += ["--save_dots"] * args.save_dots + [f"--dtype={args.dtype}"]
    runs = []
    for i in range(args.processes):
        print(f"# process {i + 1}/{args.processes}", file=sys.stderr, flush=True)
        command = [sys.executable, __file__, *argv]
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        runs.append(json.loads(done.stdout.splitlines()[-1]))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default=None,
                        help=f"default: {','.join(SHAPES)}; with --scan_unroll: adding,smnist")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--processes", type=int, default=1,
                        help="run it N times, each in a fresh process; quote the medians over "
                             "the processes of each one's medians (the ratio's range beside)")
    parser.add_argument("--models", default="",
                        help="comma-separated: time only the rows whose name contains one")
    parser.add_argument("--scan_unroll", default="",
                        help="e.g. 1,2,4,8: our skip LSTM at each unroll, vs the first")
    parser.add_argument("--save_dots", action="store_true",
                        help="also our skip LSTM and GRU with only the steps' matrix products "
                             "saved for the backward pass (jax.checkpoint)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                        help="of every row's computation (parameters stay float32)")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    unrolls = [int(k) for k in args.scan_unroll.split(",")] if args.scan_unroll else []
    shapes = (args.shapes or ("adding,smnist" if unrolls else ",".join(SHAPES))).split(",")
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-4))
    if args.processes > 1:
        runs = in_processes(args, shapes)
    else:
        runs = [{}]
        for shape in shapes:
            _, _, _, H, layers = SHAPES[shape]
            rows = unroll_models(H, layers, unrolls) if unrolls else models(
                H, layers, args.save_dots, jnp.dtype(args.dtype))
            if args.models:
                rows = {name: row for name, row in rows.items()
                        if any(part in name for part in args.models.split(","))}
            runs[0][shape] = measure(shape, rows, tx, args.repeats)
    if args.json:
        print(json.dumps(runs[0]))
        return
    print(f"# {platform.machine()}, {jax.devices()[0].device_kind}, jax {jax.__version__}, "
          f"{allocator.describe()}, {args.dtype}"
          + (f", {len(runs)} processes" if len(runs) > 1 else ""))
    versus = f"unroll={unrolls[0]}" if unrolls else "Flax"
    spread = " | range" if len(runs) > 1 else ""
    print(f"| shape (B, T, F, H) | model | ms / step | vs {versus}{spread} | compile s | temp MB "
          "| GFLOP/s |")
    print("|---|---|---|---|" + "---|" * bool(spread) + "---|---|---|")
    for shape in shapes:
        B, T, F, H, layers = SHAPES[shape]
        names = list(runs[0][shape])
        for name in names:
            reference = names[0] if unrolls else flax_baseline(name, names)
            seconds, compile_s = (float(np.median([run[shape][name][key] for run in runs]))
                                  for key in ("seconds", "compile"))
            s = runs[0][shape][name]  # temporaries and FLOPs: the same in every process
            ratio = range_ = "n/a"
            if reference:
                ratios = [run[shape][name]["seconds"] / run[shape][reference]["seconds"]
                          for run in runs]
                ratio, range_ = f"{np.median(ratios):.2f}", f"{min(ratios):.2f}-{max(ratios):.2f}"
            print(f"| {shape} ({B}, {T}, {F}, {H}{'x2' if layers > 1 else ''}) | {name} "
                  f"| {1e3 * seconds:.1f} | {ratio}{f' | {range_}' if spread else ''} "
                  f"| {compile_s:.2f} | {s['temp']:.0f} | {s['flops'] / seconds / 1e9:.0f} |",
                  flush=True)


if __name__ == "__main__":
    allocator.reexec()
    main()
