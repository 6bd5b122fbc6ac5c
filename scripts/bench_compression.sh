#!/usr/bin/env bash
# Compression experiment, one binary against another: `svcca analyze RUN --compression
# LAYERS --no-plots` timed (whole process, wall clock) on copies of one trained run,
# alternating old and new, REPEATS times each; the compression folder is deleted before
# every run (results are resumable). Then the tables of the two are compared, and the new
# binary is also timed with --eval-images N.
#
# Usage, from the repository root (after `source scripts/env.sh`):
#   scripts/bench_compression.sh OLD_BINARY [NEW_BINARY]
# Environment: RUN (a trained run folder; default: train configs/synthetic.toml with
# train.steps=300 into $WORK/run), WORK (default /tmp/bench-compression), REPEATS (3),
# LAYERS (fc1,fc2), EVAL_IMAGES (500).
set -euo pipefail
OLD=${1:?usage: scripts/bench_compression.sh OLD_BINARY [NEW_BINARY]}
NEW=${2:-target/release/svcca}
WORK=${WORK:-/tmp/bench-compression}
REPEATS=${REPEATS:-3}
LAYERS=${LAYERS:-fc1,fc2}
EVAL_IMAGES=${EVAL_IMAGES:-500}
mkdir -p "$WORK"
if [ -z "${RUN:-}" ]; then
    RUN=$WORK/run
    [ -d "$RUN" ] || "$NEW" train configs/synthetic.toml --out "$RUN" --set train.steps=300 >/dev/null 2>&1
fi
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); cpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "old: $OLD; new: $NEW; run: $RUN; layers: $LAYERS; repeats: $REPEATS"

# "WALL CPU" seconds of one analysis on the copy TAG of the run (extra flags after TAG),
# by GNU time; CPU = user + system, the steadier of the two on a loaded machine.
timed() {
    local bin=$1 tag=$2
    shift 2
    local dir=$WORK/$tag
    [ -d "$dir" ] || cp -r "$RUN" "$dir"
    rm -rf "$dir/analysis"
    /usr/bin/time -f '%e %U %S' -o "$WORK/time" "$bin" analyze "$dir" --compression "$LAYERS" --no-plots "$@" >/dev/null 2>&1
    awk '{print $1, $2 + $3}' "$WORK/time"
}

old_w=() old_c=() new_w=() new_c=() sub_w=() sub_c=()
for r in $(seq "$REPEATS"); do
    read -r w c < <(timed "$OLD" old)
    old_w+=("$w") old_c+=("$c")
    read -r w c < <(timed "$NEW" new)
    new_w+=("$w") new_c+=("$c")
    read -r w c < <(timed "$NEW" sub --eval-images "$EVAL_IMAGES")
    sub_w+=("$w") sub_c+=("$c")
    echo "repeat $r (wall / CPU s): old ${old_w[-1]} / ${old_c[-1]}, new ${new_w[-1]} / ${new_c[-1]}," \
        "new --eval-images $EVAL_IMAGES ${sub_w[-1]} / ${sub_c[-1]} (load $(cut -d' ' -f1 /proc/loadavg))"
done
least() { printf '%s\n' "$@" | sort -g | head -1; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
ratio() { echo "scale=2; $1 / $2" | bc; }
for kind in wall CPU; do
    if [ $kind = wall ]; then o=$(median "${old_w[@]}") n=$(median "${new_w[@]}") s=$(median "${sub_w[@]}")
    else o=$(median "${old_c[@]}") n=$(median "${new_c[@]}") s=$(median "${sub_c[@]}"); fi
    echo "median $kind: old $o s, new $n s ($(ratio "$o" "$n")x), new --eval-images $EVAL_IMAGES $s s ($(ratio "$o" "$s")x)"
done
o=$(least "${old_w[@]}") n=$(least "${new_w[@]}") s=$(least "${sub_w[@]}")
echo "least wall: old $o s, new $n s ($(ratio "$o" "$n")x), new --eval-images $EVAL_IMAGES $s s ($(ratio "$o" "$s")x)"
for f in compression.csv compression_summary.csv; do
    if cmp -s "$WORK/old/analysis/compression-logits/$f" "$WORK/new/analysis/compression-logits/$f"; then
        echo "$f: identical"
    else
        echo "$f: DIFFERENT"
        diff "$WORK/old/analysis/compression-logits/$f" "$WORK/new/analysis/compression-logits/$f" || true
    fi
done
