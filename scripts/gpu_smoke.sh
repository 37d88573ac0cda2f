#!/usr/bin/env bash
# GPU smoke test: the whole pipeline on one CUDA device in under 5 minutes, offline; prints one markdown table
# (what | result | seconds). Every row runs even after a failed one; exits 1 if any row failed.
#
#   bash scripts/gpu_smoke.sh                 # on the GPU machine, from anywhere (it cds to the repository root)
#   PY=/path/to/python bash scripts/gpu_smoke.sh
#   bash scripts/gpu_smoke.sh --cpu-dry-run   # tiny shapes on CPU, no notebooks/grid: checks the script itself
#
# PY: a python whose torch has CUDA and which has this project's dependencies (default: .venv/bin/python if it
# exists, else python3). OUT: where runs and logs go (default: a new folder under /tmp). Each row's log is in
# $OUT/logs; the table is also written to $OUT/summary.md.
set -u
cd "$(dirname "$0")/.."
if [ -z "${PY:-}" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONHASHSEED=0 TQDM_DISABLE=1
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/mplmm-gpu-smoke.XXXXXX")}
mkdir -p "$OUT/logs"

DRY=0
if [ "${1:-}" = "--cpu-dry-run" ]; then DRY=1; fi
if [ $DRY = 1 ]; then
    DEV=cpu; SEQ="6 8 8"; SIZE=0.05; EPOCHS=1; BENCH="--quick --threads 2"
else
    DEV=cuda; SEQ="50 375 500"; SIZE=1.0; EPOCHS=2; BENCH=""
fi
# synthetic-mosi at MOSI-unaligned shapes (dims 300/5/20; SIZE 1.0 = MOSI's 1,284/229/686 samples), d=30, P=16
DATA="--dataset synthetic-mosi --seq_lens $SEQ --size $SIZE --device $DEV"
TRAIN="py -m mplmm train $DATA --quiet --epochs $EPOCHS"
HELP="$PY scripts/gpu_smoke.py"

ROWS=()
FAILED=0
# row WHAT COMMAND...: runs COMMAND (a shell string), logs its output; its last line is the row's result
row() {
    local what=$1 cmd=$2 log status t0 t1
    log="$OUT/logs/$(printf '%s' "$what" | tr -c 'A-Za-z0-9' '_').log"
    t0=$(date +%s.%N)
    if (eval "$cmd") >"$log" 2>&1; then status=ok; else status=FAIL; FAILED=$((FAILED + 1)); fi
    t1=$(date +%s.%N)
    local result
    result=$(grep -v '^[[:space:]]*$' "$log" | tail -n 1 | cut -c1-160 | sed 's/|/\\|/g')
    ROWS+=("| $what | $status: $result | $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') |")
    echo "[$status] $what" >&2
}
py() { "$PY" "$@"; }

PRE=$OUT/pretrain TUNE=$OUT/tune_fp32 TUNE_BF16=$OUT/tune_bf16
row "pretrain mult ($EPOCHS epochs, $DEV)" \
    "$TRAIN --model mult --out $PRE && $HELP metric $PRE"
row "prompt-tune mplmm fp32" \
    "$TRAIN --pretrained $PRE/best.pt --train_rate 0.7 --out $TUNE && $HELP metric $TUNE"
row "prompt-tune mplmm bf16 (--amp)" \
    "$TRAIN --pretrained $PRE/best.pt --train_rate 0.7 --amp --out $TUNE_BF16 && $HELP metric $TUNE_BF16"

# resumed = uninterrupted: 2 epochs in one go vs 1 epoch, then resumed from last.pt (deterministic, dropout on)
RES="py -m mplmm train --dataset synthetic-mosi --seq_lens $SEQ --size 0.25 --device $DEV --quiet --deterministic \
 --pretrained $PRE/best.pt --train_rate 0.7 --model_arg frozen_dropout=true"
row "resumed vs uninterrupted (deterministic)" \
    "$RES --epochs 2 --out $OUT/full && $RES --epochs 1 --out $OUT/resumed \
     && $RES --epochs 2 --out $OUT/resumed && $HELP same-weights $OUT/full/last.pt $OUT/resumed/last.pt 0"

EVAL="py -m mplmm evaluate $TUNE/best.pt --dataset synthetic-mosi --seq_lens $SEQ --size $SIZE --test_rate 0.5"
row "evaluate: $DEV vs cpu, same checkpoint" \
    "$EVAL --device $DEV --out $OUT/eval_dev && $EVAL --device cpu --out $OUT/eval_cpu \
     && $HELP same-numbers $OUT/eval_dev/evaluate.json $OUT/eval_cpu/evaluate.json 1e-4 loss,MAE,Corr,missing_entry_fraction"
row "curve (11 rates x 1 mask seed + 7 modes)" \
    "py -m mplmm curve $TUNE/best.pt $DATA --mask_seeds 0 --quiet --out $OUT/curve > $OUT/curve.log \
     && grep 'area under' $OUT/curve.log"

if [ $DRY = 1 ]; then
    row "notebooks 01-04 (papermill)" "echo skipped in the CPU dry run"
    row "grid tiny.yaml --jobs 2" "echo skipped in the CPU dry run"
else
    row "notebooks 01-04 (papermill, $DEV)" "$HELP notebooks $OUT/notebooks $DEV"
    row "grid tiny.yaml --jobs 2 ($DEV)" \
        "$HELP grid $OUT/grid $DEV && py -m mplmm batch $OUT/grid/grid.yaml --jobs 2 && $HELP grid-check $OUT/grid"
fi

for prec in fp32 bf16; do
    flag=""
    if [ $prec = bf16 ]; then flag="--amp"; fi
    row "bench_train $prec ($DEV)" \
        "py benchmarks/bench_train.py --device $DEV $flag $BENCH > $OUT/bench_$prec.log; $HELP bench $OUT/bench_$prec.log"
done

{
    echo "## GPU smoke ($("$PY" -c 'import torch; print(f"torch {torch.__version__}, " + (torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA"))' 2>&1 | tail -n 1))"
    echo
    echo "| what | result | seconds |"
    echo "|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
    echo
    echo "$FAILED row(s) failed; logs and runs in $OUT"
} | tee "$OUT/summary.md"
[ "$FAILED" -eq 0 ]
