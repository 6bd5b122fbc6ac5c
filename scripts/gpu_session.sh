#!/usr/bin/env bash
# The device checks, as one prepared call on a machine with a GPU (the lent device
# machine runs commands in a copy of this tree; build here first, carry target/).
#
#   scripts/gpu_session.sh [--device cuda] [--out DIR]
#
# Build here (`scripts/setup.sh && cargo test --release --locked --no-run`), then run it
# there with `carry: ["target/release/svcca", "target/release/deps", "runs/gpu-check"]`
# and a trained run folder made here with `scripts/gpu_session.sh --prepare` (a short
# quickstart run, a few MB). Order, as the checks must be read:
#   1. correctness against the CPU: the CUDA backend loads and is seen
#      (tests/device.rs binary), `svcca compare` on every fixture (scripts/gpu_check.py),
#      the learning-dynamics analysis of the carried run on the device against the CPU
#      (every similarity to 1e-6);
#   2. timings: gpu_check.py's large comparisons, the dynamics analysis on each device,
#      training throughput (scripts/bench_train.py);
#   3. a short table last (also in DIR/gpu_session.txt).
# `--device cpu --quick` is a dry run of the whole script on a machine without a GPU.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

device=cuda
out="${OUT:-/tmp/gpu-session}"
quick=()
run=runs/gpu-check
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --quick) quick=(--big 4000x256 --conv-datapoints 200); shift ;;  # small sizes, for a dry run
        --prepare)
            # Here, before the call: a short quickstart run to analyse there.
            target/release/svcca train configs/quickstart.toml --out "$run" --device cpu --set train.steps=200 --set checkpoints.every=100
            exit 0 ;;
        *) echo "gpu_session.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
mkdir -p "$out"
table="$out/gpu_session.txt"
: > "$table"
row() { printf '%-44s %s\n' "$1" "$2" | tee -a "$table"; }

# The machine's own PyTorch (2.11.0, CUDA): the binary finds libtorch there.
python=${PYTHON:-python3}
torch_lib=$("$python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "torch $("$python" -c 'import torch; print(torch.__version__, torch.cuda.is_available())') at $torch_lib" >&2
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader >&2 || true

echo "== 1. correctness" >&2
device_test=$(ls target/release/deps/device-* 2>/dev/null | grep -v '\.d$' | head -1 || true)
if [ -n "$device_test" ]; then
    if "$device_test" >"$out/device_test.log" 2>&1; then row "tests/device.rs" "passed"; else row "tests/device.rs" "FAILED (see device_test.log)"; fi
else
    row "tests/device.rs" "not carried (target/release/deps)"
fi
"$python" scripts/gpu_check.py --gpu "$device" --out "$out" "${quick[@]}" > "$out/gpu_check.log" 2>&1 && row "gpu_check.py (compare, fixtures + timings)" "passed" \
    || row "gpu_check.py (compare, fixtures + timings)" "FAILED (see gpu_check.log)"

if [ -d "$run/checkpoints" ]; then
    for d in $(printf '%s\n' cpu "$device" | sort -u); do
        rm -rf "$out/run-$d" && cp -r "$run" "$out/run-$d" && rm -rf "$out/run-$d/analysis" "$out/run-$d/plots"
        start=$EPOCHREALTIME
        target/release/svcca analyze "$out/run-$d" --device "$d" --no-plots > "$out/analyze-$d.log" 2>&1
        "$python" -c "print(round($EPOCHREALTIME - $start, 2))" > "$out/analyze-$d.seconds"
    done
    worst=$("$python" - "$out/run-cpu/analysis/similarity.csv" "$out/run-$device/analysis/similarity.csv" <<'PY'
import csv, sys
a, b = (list(csv.DictReader(open(p))) for p in sys.argv[1:3])
assert [r["step"] + r["layer"] + r["final_layer"] for r in a] == [r["step"] + r["layer"] + r["final_layer"] for r in b]
print(max(abs(float(x["similarity"] or 0) - float(y["similarity"] or 0)) for x, y in zip(a, b)))
PY
)
    ok=$("$python" -c "print('passed' if $worst <= 1e-6 else 'FAILED')")
    row "dynamics analysis $device vs cpu (max |diff|)" "$worst ($ok, tolerance 1e-6)"
else
    row "dynamics analysis" "no run carried ($run: run scripts/gpu_session.sh --prepare first)"
fi

echo "== 2. timings" >&2
if [ -d "$run/checkpoints" ]; then
    for d in $(printf '%s\n' cpu "$device" | sort -u); do
        row "dynamics analysis, $d (s)" "$(cat "$out/analyze-$d.seconds")"
    done
fi
"$python" scripts/bench_train.py --device "$device" --steps 30 --repeats 2 > "$out/bench_train.log" 2>&1 \
    && row "bench_train.py --device $device" "see bench_train.log: $(tail -1 "$out/bench_train.log")" \
    || row "bench_train.py --device $device" "FAILED (see bench_train.log)"

echo "== 3. table" >&2
cat "$table"
[ -f "$out/gpu_check.md" ] && cat "$out/gpu_check.md" || true
