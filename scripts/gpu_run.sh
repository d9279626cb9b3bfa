#!/bin/bash
# One pass on one GPU, parts one after another in the order given (never side by side: separate
# training processes on one GPU each ran ≈10x slower than alone, BENCHMARKS.md).
#
# Usage, from the repository root:  scripts/gpu_run.sh OUTDIR [PART ...]
# Parts (default: bench gradient mnist):
#   bench     the GPU rows of the benchmarks (train step incl. skip(from_linen) and the cuDNN
#             LSTM anchor, float32 then bfloat16; inference, then the chunked jumping loop at
#             K = 1, 4, 8; population), ≈5 min
#   gradient  RESULTS.md's λ = 0 experiment: adding task, Skip LSTM λ ∈ {0, 1e-5}, 4 seeds,
#             the paper's text (eq5) then the authors' code (--config.reference_code=True),
#             GRADIENT_STEPS steps each (default 60000); resumes
#   mnist     sequential MNIST on our short schedule (configs/mnist_fast.py), Skip LSTM then
#             Skip GRU λ=1e-4, 4 seeds, MNIST_SECONDS more each (default 240); resumes
#   table1 / table2   the adding / frequency table, every row (TABLE_ROWS="skip_lstm skip_gru"
#             for some), 4 seeds, each row stopped once every member has settled
#             (stop_when_settled: solved, and the update gate's mean Δũ and the % updates held
#             still over 5 evaluations) or at TABLE_STEPS (default 30000, said "cap" in the
#             table), and after TABLE_SECONDS more (default 120); resumes, table1 also from
#             the rows' packed checkpoints under results/table1_cpu/ (rows begun on a CPU)
#   table1_ref  Table 1's Skip LSTM and Skip GRU at λ = 0 under the authors' setup
#             (--set=reference_code=True), 4 seeds, TABLE_STEPS and TABLE_SECONDS as above;
#             resumes, also from results/table1_cpu_reference_code/
# Everything lands in OUTDIR: logs, results.json, metrics, figures and the latest/ checkpoints
# (to resume on the next machine: unpack each OUTDIR/workdirs_<part>.tar.gz in the repository
# root; scripts/pack_runs.py says what they keep).
# MNIST=DIR: the four MNIST IDX files, for a machine without internet access.
# PYTHON=...: the interpreter (default: the set-up's .venv/bin/python if any, else python3).
set -u
OUTDIR=${1:?usage: scripts/gpu_run.sh OUTDIR [bench gradient mnist table1 table2]}
shift
PARTS=${*:-bench gradient mnist}
W=workdirs/gpu_run
mkdir -p "$OUTDIR" $W/logs
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONPATH=".:${PYTHONPATH:-}"
mnist_dir=()
[ -n "${MNIST:-}" ] && mnist_dir=(--config.data.dir="$MNIST")

# unpack_rows DIR WORKDIR: each row's newest packed checkpoint in DIR/<row>/checkpoint_*.tar.gz
# into WORKDIR/<row>, unless WORKDIR already holds that row (an earlier pass went further).
unpack_rows() {
  for pack_dir in "$1"/*/; do
    row=$(basename "$pack_dir")
    pack=$(ls "$pack_dir"checkpoint_*.tar.gz 2>/dev/null | sort -V | tail -1)
    [ -n "$pack" ] && [ ! -d "$2/$row" ] && mkdir -p "$2" && tar xzf "$pack" -C "$2" \
      && echo "$row: resuming from $pack"
  done
}

# time_box WORKDIR SECONDS: the max_train_seconds that gives a run SECONDS more than it has trained
# already (max_train_seconds counts every session of a run; results.json holds their sum).
time_box() {
  "$PY" -c "import json, os, sys; path = os.path.join(sys.argv[1], 'results.json')
trained = json.load(open(path))['seconds'] if os.path.isfile(path) else 0
print(float(sys.argv[2]) + trained)" "$1" "$2"
}

# A two-step run first: a broken install fails here in seconds, not minutes.
"$PY" -m skip_rnn.experiments.reproduce --table=1 --workdir=$W/smoke --num_seeds=2 \
  --models=skip_gru \
  --num_train_steps=2 --set=eval_every=2 --set=data.seq_length=10 --set=data.num_eval=8 \
  --set=model.hidden_size=4 --set=batch_size=8 --set=eval_batch_size=8 > "$OUTDIR/smoke.log" 2>&1 \
  || { cat "$OUTDIR/smoke.log"; exit 1; }

for part in $PARTS; do
  echo "== $part at ${SECONDS}s"
  case $part in
  bench) {
    nvidia-smi -L
    "$PY" -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__,
      'optax', optax.__version__, jax.devices())"
    echo "## train step"; timeout 120 "$PY" benchmarks/train_step.py --shapes=adding,smnist \
      --repeats=5
    echo "## train step, bfloat16"; timeout 90 "$PY" benchmarks/train_step.py \
      --shapes=adding,smnist --repeats=5 --dtype=bfloat16
    echo "## inference"; timeout 60 "$PY" benchmarks/inference.py --repeats=5
    echo "## inference, chunked jumping loop"; timeout 60 "$PY" benchmarks/inference.py \
      --repeats=5 --chunks=1,4,8 --batch_sizes=1,256
    echo "## population"; timeout 90 "$PY" -m benchmarks.population --lengths=50,784
  } > "$OUTDIR/benchmarks.md" 2>&1 ;;
  gradient)
    for form in eq5 reference_code; do
      switch=(--config.model.gradient=eq5)
      [ $form = reference_code ] && switch=(--config.reference_code=True)
      "$PY" train.py --config=configs/adding.py --workdir=$W/gradient/$form \
        "${switch[@]}" --config.costs_per_sample='(0., 1e-5)' --config.stop_when_settled=False \
        --config.num_seeds=4 --config.num_train_steps=${GRADIENT_STEPS:-60000} \
        > $W/logs/gradient_$form.log 2>&1
    done ;;
  mnist)
    for cell in skip_lstm skip_gru; do
      "$PY" train.py --config=configs/mnist_fast.py --workdir=$W/mnist_fast/$cell \
        --config.model.cell=$cell --config.num_seeds=4 "${mnist_dir[@]}" \
        --config.max_train_seconds=$(time_box $W/mnist_fast/$cell ${MNIST_SECONDS:-240}) \
        > $W/logs/mnist_fast_$cell.log 2>&1
    done ;;
  table1_ref)
    unpack_rows results/table1_cpu_reference_code $W/table1_reference_code
    for row in skip_lstm skip_gru; do
      "$PY" -m skip_rnn.experiments.reproduce --table=1 --workdir=$W/table1_reference_code \
        --models=$row --set=reference_code=True '--set=costs_per_sample=(0.0,)' \
        --set=stop_when_settled=true --set=num_train_steps=${TABLE_STEPS:-30000} \
        --set=max_train_seconds=$(time_box $W/table1_reference_code/$row ${TABLE_SECONDS:-120}) \
        > $W/logs/table1_ref_$row.log 2>&1
    done ;;
  table1|table2)
    n=${part#table}
    [ $n = 1 ] && unpack_rows results/table1_cpu $W/table1
    rows=${TABLE_ROWS:-$("$PY" -m skip_rnn.experiments.reproduce --table=$n --help \
      | sed -n '/^Tables/,$p' | grep "^  $n:" | sed 's/.*rows //; s/;.*//; s/,//g')}
    for row in $rows; do
      "$PY" -m skip_rnn.experiments.reproduce --table=$n --workdir=$W/table$n --models=$row \
        --set=stop_when_settled=true --set=num_train_steps=${TABLE_STEPS:-30000} \
        --set=max_train_seconds=$(time_box $W/table$n/$row ${TABLE_SECONDS:-120}) \
        > $W/logs/table${n}_$row.log 2>&1
    done
    "$PY" -m skip_rnn.experiments.reproduce --table=$n --workdir=$W/table$n --collect \
      > $W/logs/table$n.txt 2>&1 ;;
  *) echo "unknown part $part"; exit 2 ;;
  esac
done
"$PY" scripts/pack_runs.py $W "$OUTDIR"  # workdirs_<part>.tar.gz: what a resume reads
ls -la "$OUTDIR"
