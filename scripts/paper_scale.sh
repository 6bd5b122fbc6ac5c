#!/usr/bin/env bash
# Paper-scale rehearsal, without CIFAR-10 or a GPU: the shipped CIFAR-10 configs at the
# paper's widths and probe sizes, unchanged except for the number of steps and
# checkpoints, on generated CIFAR-10 files in the official binary format (learnable,
# class-dependent images: `svcca data synthetic cifar10`). Each stage's wall time and
# peak memory (the maximum resident set, from /usr/bin/time) is printed as a table at
# the end, and written to OUT/stages.tsv.
#
#   scripts/paper_scale.sh                       # both configs, 40 steps, checkpoints 0/20/40
#   STEPS=100 CONFIGS=cifar10_resnet20 scripts/paper_scale.sh
#
# Settings (environment): STEPS (training steps, default 40; checkpoints at 0, STEPS/2
# and STEPS), CONFIGS (default "cifar10_convnet cifar10_resnet20"), OUT (default
# runs/paper-scale), DEVICE (train.device, default auto), EVAL_IMAGES (--compression's
# test images, default 1000). Rerunning resumes what is done (and so times only what is
# left): use a new OUT to time everything again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

STEPS=${STEPS:-40}
CONFIGS=${CONFIGS:-"cifar10_convnet cifar10_resnet20"}
OUT=${OUT:-runs/paper-scale}
DEVICE=${DEVICE:-auto}
EVAL_IMAGES=${EVAL_IMAGES:-1000}
svcca=target/release/svcca
[ -x "$svcca" ] || scripts/setup.sh
[ -x /usr/bin/time ] || { echo "paper_scale.sh: needs /usr/bin/time (Debian: apt-get install time)" >&2; exit 2; }
if ! [ "$STEPS" -ge 2 ] 2>/dev/null; then
    echo "paper_scale.sh: STEPS=$STEPS: need a whole number of at least 2" >&2
    exit 2
fi

mkdir -p "$OUT"
table="$OUT/stages.tsv"
printf 'stage\twall_s\tpeak_mib\n' > "$table"

# Runs one stage ("$1": its name; the rest: the command), appending its wall time and
# peak memory to the table; stops the rehearsal when it fails.
stage() {
    local name=$1
    shift
    echo "== $name: $*" >&2
    local measured
    measured=$(mktemp)
    if ! /usr/bin/time -f '%e %M' -o "$measured" "$@"; then
        echo "paper_scale.sh: stage '$name' failed" >&2
        rm -f "$measured"
        exit 1
    fi
    read -r wall kib < <(tail -n 1 "$measured")
    rm -f "$measured"
    printf '%s\t%s\t%s\n' "$name" "$wall" "$((kib / 1024))" >> "$table"
}

data="$OUT/data"
if [ ! -d "$data/cifar-10-batches-bin" ]; then
    stage "generate CIFAR-10 files (50000 + 10000 images)" "$svcca" data synthetic cifar10 --dir "$data"
fi

shorten=(--set "data.path=$data" --set "train.steps=$STEPS" --set "checkpoints.every=$((STEPS / 2))"
         --set "train.eval_every=$((STEPS / 2))" --set "train.device=\"$DEVICE\"")
for config in $CONFIGS; do
    run="$OUT/$config"
    stage "$config: svcca run (train, analyse, plot)" "$svcca" run "configs/$config.toml" --out "$run" "${shorten[@]}"
    case "$config" in
        cifar10_convnet*) layers=c3,p2,fc1 ;;
        *) layers=s1b3,s2b3,s3b3 ;;
    esac
    stage "$config: analyze --compression $layers" "$svcca" analyze "$run" --compression "$layers" --eval-images "$EVAL_IMAGES" --no-plots
    stage "$config: analyze --classes all" "$svcca" analyze "$run" --classes all --no-plots
    if [ -f "configs/${config}_freeze.toml" ]; then
        stage "$config: experiment freeze (1 seed)" "$svcca" experiment freeze "configs/${config}_freeze.toml" --seeds 1 \
            --out "$OUT/${config}_freeze" "${shorten[@]}"
    fi
done

echo
echo "Paper-scale rehearsal, $STEPS steps, on $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') ($(nproc) cores):"
column -t -s $'\t' "$table" 2>/dev/null || cat "$table"
