#!/usr/bin/env bash
# Analysis memory at the paper's widths: the CIFAR-10 convnet (64 channels, fc 512/256)
# trained a few steps on generated CIFAR-10 files, then its learning-dynamics analysis
# (two checkpoints: step 0 and the last, 15 layers x 15) at each probe size, under the
# default memory budget (or MEMORY_MIB), in float64 (or PRECISION=float32, which sets
# analysis.precision). For each: the analysis's own estimate, the measured peak resident
# memory (/usr/bin/time), the wall time and the time per checkpoint. With
# BASELINE=path/to/another/svcca, that binary analyses a copy of the same run alongside,
# for a side-by-side ratio (it must read the same run folder).
#
#   scripts/bench_analysis_memory.sh                   # PROBES="1280 2560"
#   PROBES=640 BASELINE=/tmp/svcca-before scripts/bench_analysis_memory.sh
#   PROBES=2560 PRECISION=float32 scripts/bench_analysis_memory.sh
#
# Work folder: OUT (default runs/bench-analysis-memory); the trained run is reused.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PROBES=${PROBES:-"1280 2560"}
OUT=${OUT:-runs/bench-analysis-memory}
svcca=$(realpath target/release/svcca)
[ -x "$svcca" ] || { echo "bench_analysis_memory.sh: build first (scripts/setup.sh)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "bench_analysis_memory.sh: needs /usr/bin/time (apt-get install time)" >&2; exit 2; }

mkdir -p "$OUT"
[ -d "$OUT/data/cifar-10-batches-bin" ] || "$svcca" data synthetic cifar10 --dir "$OUT/data" --train 5000 --test 3000 >/dev/null
run="$OUT/trained"
"$svcca" train configs/cifar10_convnet.toml --out "$run" --set "data.path=$OUT/data" --set train.steps=20 \
    --set checkpoints.every=20 --set train.device=\"cpu\" >/dev/null

# Analyses a fresh copy of the trained run with binary $1 at probe $2; prints one row.
measure() {
    local bin=$1 probe=$2 label=$3
    local dir="$OUT/$label-$probe" log="$OUT/$label-$probe.log"
    rm -rf -- "$dir"
    mkdir -p "$dir"
    cp -r "$run/checkpoints" "$run/metrics.csv" "$dir/"
    sed "s/^probe_size = .*/probe_size = $probe/" "$run/config.toml" > "$dir/config.toml"
    if [ -n "${MEMORY_MIB:-}" ]; then
        sed -i "s/^\[analysis\]$/[analysis]\nmemory_mib = $MEMORY_MIB/" "$dir/config.toml"
    fi
    if [ -n "${PRECISION:-}" ]; then
        sed -i "s/^precision = .*/precision = \"$PRECISION\"/" "$dir/config.toml"
        grep -q "^precision = \"$PRECISION\"$" "$dir/config.toml" ||
            { echo "bench_analysis_memory.sh: no analysis.precision in $dir/config.toml to set" >&2; exit 2; }
    fi
    local measured status=0
    measured=$(mktemp)
    SVCCA_LOG=info /usr/bin/time -f '%e %M' -o "$measured" "$bin" analyze "$dir" --no-plots > "$log" 2>&1 || status=$?
    read -r wall kib < <(tail -n 1 "$measured")
    rm -f "$measured"
    local estimate
    estimate=$(grep -o 'estimated peak [0-9.]* [GM]iB of a budget of [0-9.]* [GM]iB' "$log" | sed 's/estimated peak //' || true)
    local how
    how=$(grep -o '; all layers side by side\|; streamed: [0-9]* block(s)[^,]*, each checkpoint recorded once[a-z ]*[0-9]*' "$log" | sed 's/^; //' || true)
    awk -v l="$label" -v p="$probe" -v e="${estimate:--}" -v k="$kib" -v w="$wall" -v h="${how:-exit $status}" \
        'BEGIN { printf "%s\t%s\t%s\t%.0f\t%.2f\t%.0f\t%.0f\t%s\n", l, p, e, k / 1024, k / 1048576, w, w / 2, h }'
}

echo "analysis of the paper's convnet, 2 checkpoints x 15 x 15 layers, ${PRECISION:-float64}, on $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') ($(nproc) cores)"
{
    printf 'binary\tprobe\testimate of budget\tpeak MiB\tpeak GiB\twall s\ts per checkpoint\thow\n'
    for probe in $PROBES; do
        measure "$svcca" "$probe" this
        if [ -n "${BASELINE:-}" ]; then
            measure "$(realpath "$BASELINE")" "$probe" baseline
        fi
    done
} | column -t -s $'\t' 2>/dev/null || cat
