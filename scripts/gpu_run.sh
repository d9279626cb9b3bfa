#!/bin/bash
# One pass on one GPU in about 9 minutes; it made the H200 numbers of RESULTS.md and
# BENCHMARKS.md:
#   1. the GPU rows of the benchmarks, on the quiet GPU, one after another;
#   2. then, side by side as separate processes (one population of 4 seeds each; chosen to fit
#      the time box, though each process then runs ≈10x slower than alone): Table 1 and
#      Table 2 at Ts = 1 ms (the LSTM, Skip LSTM, GRU and Skip GRU rows) and sequential MNIST
#      (Skip LSTM, Skip GRU, λ = 1e-4), each trained for what is left of the END seconds after
#      step 1, less time for its last evaluation and figures, then evaluated and drawn;
#   3. the tables collected (with their inference FLOPs column; the p_skip rows, e.g.
#      `--models=lstm_pskip0.5`, are not trained here and show as "row left out"), and
#      everything packed into OUTDIR, all within END seconds.
# Usage, from the repository root: scripts/gpu_run.sh OUTDIR
#   END=560 (default): seconds for the whole pass; BENCHMARKS=0 skips step 1;
#   MNIST=DIR: a directory holding the four MNIST IDX files, for a machine without internet
#   access (by default MNIST is downloaded once into ~/.cache/skip_rnn/mnist).
set -u
OUT=${1:?usage: scripts/gpu_run.sh OUTDIR}
END=${END:-560}
W=workdirs/gpu_run
rm -rf $W  # a fresh start: rows resumed from an earlier pass would have no time left
mkdir -p "$OUT" $W/logs
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONPATH=".:${PYTHONPATH:-}"
mnist_dir=()
[ -n "${MNIST:-}" ] && mnist_dir=(--data_dir="$MNIST")

# A two-step run of every part first: a broken install fails here in seconds, not minutes.
python3 -m skip_rnn.reproduce --table=1 --workdir=$W/smoke --num_seeds=2 --models=skip_gru \
  --num_train_steps=2 --set=eval_every=2 --set=data.seq_length=10 --set=data.num_eval=8 \
  --set=model.hidden_size=4 --set=batch_size=8 --set=eval_batch_size=8 > "$OUT/smoke.log" 2>&1 \
  || { cat "$OUT/smoke.log"; exit 1; }

[ "${BENCHMARKS:-1}" = 1 ] && {
  nvidia-smi -L
  python3 -c "import jax, flax, optax, orbax.checkpoint as ocp; print('jax', jax.__version__,
    'flax', flax.__version__, 'optax', optax.__version__, 'orbax', ocp.__version__, jax.devices())"
  echo "## population"; timeout 90 python3 -m benchmarks.population --lengths=50,784
  echo "## inference"; timeout 60 python3 benchmarks/inference.py --repeats=5
  echo "## train step"; timeout 60 python3 benchmarks/train_step.py --shapes=smnist --repeats=5
} > "$OUT/benchmarks.md" 2>&1

train_seconds=$((END - SECONDS - 120))  # start-up, compiling, last evaluation, figures, packing
limit=$((END - SECONDS - 30))  # a row still running then is killed, its results.json lost
(( train_seconds >= 30 )) || { echo "only $train_seconds s left to train: END is too short"; exit 1; }
echo "training for $train_seconds s, killed after $limit s"
run() {  # run <log name> <reproduce arguments...>
  timeout $limit python3 -m skip_rnn.reproduce "${@:2}" \
    --set=max_train_seconds=$train_seconds > $W/logs/$1.log 2>&1 &
}
for model in lstm skip_lstm gru skip_gru; do
  run table1_$model --table=1 --workdir=$W/table1 --models=$model
  run table2_$model --table=2 --variants=Ts=1ms --workdir=$W/table2 --models=$model
done
for model in skip_lstm skip_gru; do
  run table3_$model --table=3 --workdir=$W/table3 --models=$model "${mnist_dir[@]}"
done
(sleep 60; nvidia-smi > $W/logs/nvidia_smi_during_training.txt 2>&1) &
wait

for table in 1 2 3; do
  python3 -m skip_rnn.reproduce --table=$table --workdir=$W/table$table --collect \
    > $W/logs/table$table.txt 2>&1
  tar czf "$OUT/table$table.tar.gz" --exclude=latest -C $W table$table
done
tar czf "$OUT/logs.tar.gz" -C $W logs
ls -la "$OUT"
