#!/usr/bin/env bash
# Issue 29's CPU targets, side by side with an earlier binary (BASELINE, required for
# rows 2 and 3), alternating, on this machine:
#   1. the optimizer step for ResNet-62's parameters: the flat update against the
#      per-tensor loop it replaced (`cargo bench --bench optimizer`, one process);
#   2. training images/s, this binary against BASELINE: the linear model (whose cost is
#      the per-step overhead: batch, augmentation, optimizer) and ResNet-20, on the
#      synthetic set, one libtorch thread; and the host-device copies the loop counted;
#   3. the DFT analysis of a paper-width conv layer (2000 x 64 x 16 x 16, float32, as
#      scripts/bench_dft.py makes it): `svcca compare --conv dft` compute seconds.
#
#   BASELINE=/tmp/svcca-before scripts/bench_step_overhead.sh
#
# Prints one table last. Work folder: OUT (default runs/bench-step-overhead).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

OUT=${OUT:-runs/bench-step-overhead}
REPEATS=${REPEATS:-3}
svcca=$(realpath target/release/svcca)
base=${BASELINE:?set BASELINE to an earlier svcca binary to compare with}
[ -x "$svcca" ] && [ -x "$base" ] || { echo "bench_step_overhead.sh: build first; BASELINE must be executable" >&2; exit 2; }
python=${PYTHON:-.venv/bin/python}
mkdir -p "$OUT"
table="$OUT/table.txt"
: > "$table"

echo "== 1. optimizer step (cargo bench --bench optimizer)" >&2
source scripts/env.sh
opt=$(cargo bench --locked --bench optimizer 2>/dev/null | tee "$OUT/optimizer.txt" | grep '^step (both)')
echo "optimizer step, ResNet-62 (flat vs per-tensor): $opt" >> "$table"

echo "== 2. training images/s" >&2
# One run of binary $1 (label $2) of config $3 for $4 steps; prints images/s.
train() {
    local dir="$OUT/train-$2-$(basename "$3" .toml)"
    rm -rf -- "$dir"
    SVCCA_LOG=debug "$1" train "$3" --out "$dir" --device cpu --set train.threads=1 --set "train.steps=$4" \
        --set "train.eval_every=$4" --set "checkpoints.every=$4" --set checkpoints.at_start=false --set data.train_size=2048 \
        > /dev/null 2> "$dir.log"
    grep -o 'trained to step [0-9]* in [0-9.]*s ([0-9]* images/s)' "$dir.log" | grep -o '([0-9]*' | tr -d '('
}
cat > "$OUT/linear.toml" <<'EOF'
[model]
arch = "linear"
[train]
batch_size = 128
EOF
cat > "$OUT/resnet20.toml" <<'EOF'
[model]
arch = "resnet"
depth = 20
[train]
batch_size = 128
EOF
for spec in "linear:$OUT/linear.toml:400" "resnet20:$OUT/resnet20.toml:20"; do
    IFS=: read -r name cfg steps <<< "$spec"
    new=() old=()
    for _ in $(seq "$REPEATS"); do
        new+=("$(train "$svcca" new "$cfg" "$steps")")
        old+=("$(train "$base" old "$cfg" "$steps")")
    done
    best() { printf '%s\n' "$@" | sort -n | tail -1; }
    bn=$(best "${new[@]}") bo=$(best "${old[@]}")
    echo "training $name, 1 thread, images/s (best of $REPEATS): new $bn (${new[*]}), baseline $bo (${old[*]}), ratio $("$python" -c "print(f'{$bn / $bo:.2f}')")" >> "$table"
done
copies=$(grep -o 'host-device copies in the training loop: .*' "$OUT/train-new-linear.log" || echo "not logged")
echo "training linear, $copies" >> "$table"

echo "== 3. DFT analysis of a paper-width conv layer" >&2
if [ ! -f "$OUT/dft/a.npy" ]; then
    mkdir -p "$OUT/dft"
    "$python" - "$OUT/dft" <<'PY'
import sys, numpy as np
rng = np.random.default_rng(0)
a = rng.standard_normal((2000, 64, 16, 16), dtype=np.float32)
# B: a noisy ReLU of a 3x3 box filter of A (a conv layer's output seen through another).
b = sum(np.roll(np.roll(a, dy, 2), dx, 3) for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 9
b = np.maximum(b + 0.5 * rng.standard_normal(b.shape, dtype=np.float32), 0).astype(np.float32)
np.save(sys.argv[1] + "/a.npy", a)
np.save(sys.argv[1] + "/b.npy", b)
PY
fi
dft() {
    "$1" compare "$OUT/dft/a.npy" "$OUT/dft/b.npy" --conv dft --device cpu --json 2>/dev/null \
        | "$python" -c 'import json, sys; r = json.load(sys.stdin); print("%.3f %.12f" % (r["seconds"] - r["timings"]["read"], r["mean"]))'
}
new=() old=() means=()
for _ in $(seq "$REPEATS"); do
    read -r t m < <(dft "$svcca"); new+=("$t"); means+=("$m")
    read -r t m < <(dft "$base"); old+=("$t"); means+=("$m")
done
least() { printf '%s\n' "$@" | sort -g | head -1; }
ln=$(least "${new[@]}") lo=$(least "${old[@]}")
same=$(printf '%s\n' "${means[@]}" | sort -u | wc -l)
echo "DFT compare 2000x64x16x16, compute s (least of $REPEATS): new $ln (${new[*]}), baseline $lo (${old[*]}), new/baseline $("$python" -c "print(f'{$ln / $lo:.2f}')"); means identical: $([ "$same" = 1 ] && echo yes || echo no)" >> "$table"

echo "== table ($(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores)" >&2
cat "$table"
