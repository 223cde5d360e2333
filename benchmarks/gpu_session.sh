#!/usr/bin/env bash
# The GPU session of issues 17 and 18, prepared to run once on the device (one H200, 16 cores, torch 2.11,
# no Ray/MLflow/Optuna: bench_gpu.py needs none of them). From the repository root:
#
#   bash benchmarks/gpu_session.sh        # ≤ 7 min wall (TOTAL): the bench, then the profile if time remains
#
# "Before" is the checkout at .gpu/before: ablate/ and experiments/ of the base commit, made on the
# development machine before the run (untracked and not ignored, so the device copy of the working tree
# carries it; do not commit it):
#
#   mkdir -p .gpu/before && git archive 2d8e800 ablate experiments | tar -x -C .gpu/before
#
# Without it the bench measures this tree alone. Writes into $OUT (the device's output folder; ./out/gpu
# elsewhere): nvidia-smi.txt (card, driver, torch), bench.txt (rows as they came, the table, the ratios),
# bench.json (every result), logs/ (the last 16 kB of each worker's stderr), profile.txt (the top 15
# kernels of one swinir-light token_ln and i_ln step, only when ≥ 45 s of TOTAL are left).
# TOTAL, BUDGET (bench_gpu.py --budget) and PYTHON (default: python3 or python, whichever imports torch)
# can be set in the environment.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu}
TOTAL=${TOTAL:-420}
BUDGET=${BUDGET:-375}
mkdir -p "$OUT"
if [ -z "${PYTHON:-}" ]; then  # the first interpreter on PATH that has torch
    for candidate in python3 python; do
        if "$candidate" -c "import torch" 2>/dev/null; then PYTHON=$candidate; break; fi
    done
fi
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
start=$SECONDS

{ nvidia-smi; nproc; "$PY" -c "import sys, torch; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda)"; } \
    > "$OUT/nvidia-smi.txt" 2>&1

root=()
if [ -f .gpu/before/ablate/__init__.py ]; then
    root=(--root .gpu/before)
else
    echo "gpu_session: no .gpu/before/ablate: measuring this tree alone (no before/after)" | tee "$OUT/bench.txt"
fi
"$PY" benchmarks/bench_gpu.py ${root[@]+"${root[@]}"} --budget "$BUDGET" --json "$OUT/bench.json" \
    --logs "$OUT/logs" 2>&1 | tee -a "$OUT/bench.txt"

left=$((TOTAL - (SECONDS - start)))
if [ "$left" -ge 45 ]; then
    timeout "$left" "$PY" benchmarks/bench_gpu.py --profile --models swinir-light --budget $((left - 10)) 2>&1 \
        | tee "$OUT/profile.txt"
else
    echo "gpu_session: profile skipped, $left s left of TOTAL=$TOTAL" | tee "$OUT/profile.txt"
fi
echo "gpu_session: $((SECONDS - start)) s" | tee -a "$OUT/bench.txt"
