#!/usr/bin/env bash
# The long-run freeze experiment (README.md, "Long runs, chosen on validation"): three
# schedules against the same base runs, seeds interleaved so that the machine's load
# falls alike on every variant: for each seed, base and paper schedule, then the same
# base (copied, not retrained) against start 0.3 and against the adaptive schedule.
# Usage: long/run.sh OUT [SVCCA]   (from experiments/freeze-fashion-mnist/)
set -euo pipefail
out=${1:?give an output folder}
svcca=${2:-svcca}
declare -A sets=(
    [paper]=""
    [start-0.3]="--set freeze.start=0.3"
    [adaptive]="--set 'freeze.schedule=\"adaptive\"' --set freeze.threshold=0.99 --set freeze.check_every=143 --set analysis.probe_size=500"
)
seeds=""
for s in 0 1 2 3 4; do
    seeds=${seeds:+$seeds,}$s
    list=$seeds; [ "$s" = 0 ] && list=1   # "--seeds 1" is seed 0 alone
    for v in paper start-0.3 adaptive; do
        if [ "$v" != paper ]; then
            mkdir -p "$out/$v/base"
            [ -d "$out/$v/base/seed-$s" ] || cp -a "$out/paper/base/seed-$s" "$out/$v/base/seed-$s"
        fi
        # shellcheck disable=SC2086
        eval "$svcca" experiment freeze long.toml --seeds "$list" --out "$out/$v" ${sets[$v]}
    done
done
