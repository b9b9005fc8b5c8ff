#!/usr/bin/env bash
# The GPU checks of issue 7 in one prepared run, for a session that is lent a GPU (the device tool gives a session
# about 15 minutes in all, its start included): from the repository root,
#
#   bash benchmarks/gpu_check.sh            # on the GPU machine: run(command="bash benchmarks/gpu_check.sh", timeout_s=560)
#
# 1. the CUDA tests (tests/test_cuda.py: the supernet, the second-order step and bf16 on the GPU against the CPU,
#    search on the GPU resumed on the CPU, train with bf16 + channels_last + torch.compile);
# 2. `cellnas bench search-step` on the GPU in the DARTS CIFAR-10 setting (batch 64, C=16, 8 cells, 32x32), first and
#    second order against the textbook baseline, then with --amp bf16;
# 3. `cellnas bench train-step DARTS_V2` (fp32 NCHW; bf16 + channels_last; + torch.compile) and `cellnas bench data`.
#
# Steps run in that order under one time budget (GPU_CHECK_BUDGET seconds, default 480); a step that would start
# with under 20 s left is skipped, and each is killed at its own limit or the budget's end. It needs no install: the
# package runs from src/ with the machine's python3 (PyTorch, numpy, scikit-learn, networkx, matplotlib, tqdm).
# Everything lands in $OUT (default /tmp/gpu_check): log.txt (all output) and results.jsonl (one JSON object per
# benchmark, with its name), and summary.md, the figures for benchmarks/RESULTS.md.
#
# Without a GPU, `GPU_CHECK_DEVICE=cpu GPU_CHECK_QUICK=1 bash benchmarks/gpu_check.sh` runs the same steps on tiny
# sizes on the CPU, to check the script itself.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
DEV=${GPU_CHECK_DEVICE:-cuda}
PY=${PYTHON:-python3}
BUDGET=${GPU_CHECK_BUDGET:-480}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
LOG="$OUT/log.txt"
RESULTS="$OUT/results.jsonl"
: >"$LOG"
: >"$RESULTS"

if [ -n "${GPU_CHECK_QUICK:-}" ]; then
    SEARCH=(--batch 8 --channels 4 --layers 3 --size 16 --repeats 1 --warmup 1)
    TRAIN=(--batch 8 --channels 4 --layers 3 --size 16 --repeats 1 --warmup 1)
    DATA=(--batch 64 --n-batches 2 --workers 0)
else
    SEARCH=(--repeats 5 --warmup 2)  # the DARTS CIFAR-10 search setting (the defaults)
    TRAIN=(--repeats 5 --warmup 2)   # the DARTS CIFAR-10 evaluation setting (the defaults)
    DATA=(--batch 256 --n-batches 50)
fi

say() { echo "$*" | tee -a "$LOG"; }

# run NAME LIMIT CMD...: one step, its output appended to the log; a benchmark's JSON line goes to results.jsonl
run() {
    local name=$1 limit=$2 left rc
    shift 2
    left=$((BUDGET - SECONDS))
    if [ "$left" -lt 20 ]; then
        say "== $name: skipped ($left s of the budget left)"
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    say "== $name (limit ${limit} s): $*"
    local start=$SECONDS
    timeout "$limit" "$@" >"$OUT/.step.out" 2>>"$LOG"
    rc=$?
    cat "$OUT/.step.out" >>"$LOG"
    if [[ "$name" == bench-* ]] && [ "$rc" -eq 0 ]; then
        "$PY" -c 'import json, sys; r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); r["name"] = sys.argv[2]; print(json.dumps(r))' \
            "$OUT/.step.out" "$name" >>"$RESULTS"
    fi
    say "== $name: exit $rc after $((SECONDS - start)) s"
}

say "gpu_check $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), device $DEV"
{ nvidia-smi 2>&1 | head -15; "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())'; } >>"$LOG" 2>&1

CELLNAS_TEST_DEVICE=$DEV run tests 240 "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py
run bench-search-order1 120 "$PY" -m cellnas bench search-step --device "$DEV" --order 1 --baseline --json "${SEARCH[@]}"
run bench-search-order2 150 "$PY" -m cellnas bench search-step --device "$DEV" --order 2 --baseline --json "${SEARCH[@]}"
run bench-search-order1-bf16 60 "$PY" -m cellnas bench search-step --device "$DEV" --order 1 --amp bf16 --json "${SEARCH[@]}"
run bench-search-order2-bf16 60 "$PY" -m cellnas bench search-step --device "$DEV" --order 2 --amp bf16 --json "${SEARCH[@]}"
run bench-train-fp32 60 "$PY" -m cellnas bench train-step DARTS_V2 --device "$DEV" --json "${TRAIN[@]}"
run bench-train-bf16-cl 60 "$PY" -m cellnas bench train-step DARTS_V2 --device "$DEV" --amp bf16 --channels-last --json "${TRAIN[@]}"
run bench-data 60 "$PY" -m cellnas bench data --device "$DEV" --json "${DATA[@]}"
run bench-train-bf16-cl-compile 180 "$PY" -m cellnas bench train-step DARTS_V2 --device "$DEV" --amp bf16 --channels-last --compile --json "${TRAIN[@]}"
rm -f "$OUT/.step.out"

"$PY" - "$RESULTS" "$DEV" >"$OUT/summary.md" <<'EOF'
"""The figures of results.jsonl as a table for benchmarks/RESULTS.md."""
import json
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
print(f"device {sys.argv[2]}: {rows[0].get('device_name', '?') if rows else 'no results'}\n")
print("| benchmark | s/step (ours) | images/s | peak memory | baseline s/step | speed-up |")
print("|---|---|---|---|---|---|")
for r in rows:
    if r.get("benchmark") not in ("search-step", "train-step"):
        continue
    base, peak = r.get("baseline_step_s"), r.get("peak_mem_bytes")
    peak_s = "n/a" if peak is None else f"{peak / 2**30:.2f} GiB"
    base_s = "" if base is None else f"{base:.4f}"
    ratio_s = "" if base is None else f"{r['speedup']:.2f}x"
    print(f"| {r['name']} | {r['step_s']:.4f} | {r['images_per_s']:.0f} | {peak_s} | {base_s} | {ratio_s} |")
for r in rows:
    if r["name"] == "bench-search-order1" and r.get("batch") == 64:
        steps = 50 * (25000 // 64 + 1)  # 50 epochs of the 25,000 training images (train_portion 0.5), batch 64
        print(f"\n50-epoch CIFAR-10 first-order search, steps only: {steps} x {r['step_s']:.4f} s = "
              f"{steps * r['step_s'] / 3600:.2f} h (goal: under 1 h)")
    if r["name"] == "bench-data":
        print(f"\ndata: {json.dumps({k: v for k, v in r.items() if 'per_s' in k})}")
EOF
say "summary:"
cat "$OUT/summary.md" | tee -a "$LOG"
say "gpu_check done in $SECONDS s"
