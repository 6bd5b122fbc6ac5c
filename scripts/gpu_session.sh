#!/usr/bin/env bash
# The device checks, as ONE prepared call on a lent GPU machine (one NVIDIA GPU, no
# internet, PyTorch 2.11.0 with CUDA in its `python3`); a short table is printed last.
#
#   scripts/gpu_session.sh [--device cuda|cpu] [--quick] [--out DIR] [--budget SECONDS]
#
# Here, first: build the binary (`scripts/setup.sh`, or `source scripts/env.sh && cargo
# build --release --locked`). Then the device tool's call, from the repository root:
#
#   run(command="scripts/gpu_session.sh", carry=["target/release/svcca"], timeout_s=540)
#
# Only the binary travels (16 MiB of the 64 MiB allowed; never target/release/deps): the
# configs, fixtures and scripts are tracked files, the data is generated there. The
# binary runs with LD_LIBRARY_PATH at that machine's torch/lib (found through its
# python3, or $PYTHON). Everything is written under $OUT (the files the device tool
# brings back; default /tmp/gpu-session): one log per check, small tables, and the
# final table in $OUT/gpu_session.txt. Run folders, data and stored activations go to a
# scratch folder outside $OUT (removed at the end; KEEP_WORK=1 keeps it). Copy the
# figures into BENCHMARKS.md with the date and the card (docs/gpu.md).
#
# No `set -e`: every check runs whatever failed before, each command under its own
# `timeout`, and all of them under one deadline (--budget, default 450 s, so that the
# call ends well inside the machine's 10 minutes per command); a check that would start
# with under 20 s left is marked skipped. When check 1 does not find CUDA, the CUDA
# checks are marked "skipped (no CUDA)". The checks, in order:
#   1. CUDA found: `svcca compare --device cuda --json` of an example pair says cuda:0
#      (nvidia-smi's name and memory and torch's version in the figure); a config far
#      too large for the card is refused naming what the card holds;
#   2. the similarity fixtures on CUDA against the CPU (scripts/gpu_check.py: every dense
#      fixture and method, conv fixtures with --conv dft; 1e-6), its timings at small sizes;
#   3. the learning-dynamics analysis of one run from stored activations (analysis.mode
#      = "store", trained on the CPU) on CUDA against the CPU: every similarity to 1e-6;
#   4. training on CUDA against the CPU from the same initial weights: the quickstart for
#      200 steps with train.deterministic=true, metrics.csv compared;
#   5. `svcca experiment freeze` on CUDA (synthetic_freeze.toml, 1 seed, 200 steps);
#   6. SIGUSR1 during `svcca train` on CUDA: exit 75 with a checkpoint, then the same
#      command resumes and finishes (exit 0) with an uninterrupted run's metrics rows;
#   7. the paper's convnet (width 64, probe 2560) on 5000 + 3000 generated CIFAR-10
#      images: `svcca analyze` time and peak GPU memory (nvidia-smi, 200 ms samples), in
#      float64 and, where analysis.precision exists, float32;
#   8. training throughput against PyTorch eager on the same card (scripts/bench_train.py).
# `--device cpu --quick` rehearses the whole script without a GPU (cpu against cpu,
# small sizes; a few minutes on 2 cores).
set -o pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2

device=cuda
quick=0
out="${OUT:-/tmp/gpu-session}"
budget=${GPU_SESSION_BUDGET:-450}
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device="$2"; shift 2 ;;
        --quick) quick=1; shift ;;
        --out) out="$2"; shift 2 ;;
        --budget) budget="$2"; shift 2 ;;
        -h|--help) sed -n '2,/^set -o/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu_session.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$device" in
    cuda) want=cuda:0 ;;
    cpu) want=cpu ;;
    *) echo "gpu_session.sh: --device cuda or cpu, not $device" >&2; exit 2 ;;
esac
deadline=$((SECONDS + budget))
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/gpu-session-work.XXXXXX")
svcca=$PWD/target/release/svcca
checks="$out/checks.tsv"
: > "$checks"

# ---------------------------------------------------------------- sizes
if [ "$quick" = 1 ]; then
    example_datapoints=2000
    gpu_check_sizes=(--big 2000x64 --conv-datapoints 100)
    store_steps=20 store_extra=(--set analysis.probe_size=300)
    train_steps=40
    freeze_steps=20
    resume_steps=160 resume_eval=20 signal_at=20
    paper_data=(--train 1000 --test 600)
    paper_narrow=(--set model.width=16 --set model.fc1=128 --set model.fc2=64 --set analysis.probe_size=300 --set train.batch_size=64)
    bench=(--steps 3 --warmup 1 --repeats 1)
else
    example_datapoints=5000
    gpu_check_sizes=(--big 20000x1024 --conv-datapoints 1000)
    store_steps=100 store_extra=()
    train_steps=200
    freeze_steps=200
    resume_steps=3000 resume_eval=100 signal_at=200
    paper_data=(--train 5000 --test 3000)
    paper_narrow=()
    bench=(--steps 40 --warmup 5 --repeats 2)
fi

# ---------------------------------------------------------------- helpers
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# Seconds a command may take: N, or less where the session's deadline is nearer.
limit() {
    local n=$1 left=$((deadline - SECONDS - 5))
    [ "$left" -lt "$n" ] && n=$left
    [ "$n" -lt 1 ] && n=1
    echo "$n"
}

# runc N CMD...: CMD under `timeout`, echoed (on stderr: the check's log) first.
runc() {
    local n
    n=$(limit "$1")
    shift
    echo "+ [timeout ${n}s] $*" >&2
    timeout -k 10 "$n" "$@"
    local status=$?
    [ "$status" = 124 ] && echo "!! timed out after ${n}s" >&2
    echo "+ exit $status" >&2
    return "$status"
}

# record NAME RESULT FIGURE LOG: one row of the table, also shown as the check ends.
record() {
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$checks"
    echo "[gpu_session] $1: $2${3:+ ($3)}" >&2
}

# check NAME FUNCTION LOG: runs FUNCTION with its output in $out/LOG; the function sets
# `result` (passed/FAILED) and `figure`. Skipped when CUDA was not found (after check 1)
# or when the session's time is nearly spent.
found=unknown
check() {
    local name=$1 fn=$2 log=$3 t0=$SECONDS
    if [ "$found" = no ]; then
        record "$name" "skipped (no ${device^^})" "" ""
        return
    fi
    if [ $((deadline - SECONDS)) -lt 20 ]; then
        record "$name" "skipped (time)" "session budget ${budget}s spent" ""
        return
    fi
    echo "== $name ($(date -u +%H:%M:%S))" >&2
    result=FAILED
    figure=""
    logf="$out/$log"
    "$fn" > "$logf" 2>&1
    grep -q '^!! timed out' "$logf" && figure="TIMED OUT${figure:+; $figure}"
    record "$name" "$result" "${figure:+$figure; }$((SECONDS - t0)) s" "$log"
}

# The row of a TOML/--set refusal: the binary predates a setting (exit 2 naming it).
refused() { [ "$1" = 2 ] && grep -v '^+ ' "$logf" | grep -q "error:.*$2"; }

# ---------------------------------------------------------------- the machine
# The machine's own PyTorch: the binary finds libtorch (and CUDA's libraries) there.
python=${PYTHON:-python3}
if ! "$python" -c 'import torch' 2>/dev/null && [ -x .venv/bin/python ]; then
    python=.venv/bin/python  # here, for the dry run: the project's virtual environment
fi
torch_facts=$(timeout 120 "$python" -c '
import os, torch
print(os.path.join(os.path.dirname(torch.__file__), "lib"))
print(torch.__version__, "CUDA available" if torch.cuda.is_available() else "no CUDA")' 2>&1)
torch_lib=$(sed -n 1p <<<"$torch_facts")
torch_version=$(sed -n 2p <<<"$torch_facts")
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
gpu="no nvidia-smi"
if command -v nvidia-smi >/dev/null; then
    gpu=$(timeout 30 nvidia-smi -i 0 --query-gpu=name,memory.total --format=csv,noheader 2>&1 | head -1)
fi
{
    echo "gpu_session.sh --device $device$([ "$quick" = 1 ] && echo " --quick"), $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "GPU: $gpu; $(nproc) cores; torch $torch_version ($python)"
    echo "binary: $("$svcca" --version 2>&1 | head -1), built $(date -u -r "$svcca" '+%Y-%m-%d %H:%M UTC' 2>/dev/null || echo '(missing)');" \
        "tree: git $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
} > "$out/header.txt"
cat "$out/header.txt" >&2
if [ ! -x "$svcca" ]; then
    echo "gpu_session.sh: $svcca is missing: build it here and carry target/release/svcca" >&2
fi

# ---------------------------------------------------------------- the checks
c_found() {
    echo "torch: $torch_facts"
    echo "nvidia-smi: $gpu"
    runc 60 "$svcca" example "$work/example" --datapoints "$example_datapoints" --force
    runc 60 "$svcca" compare "$work/example/a.npy" "$work/example/b.npy" --device "$device" --json > "$work/example.json"
    cat "$work/example.json"
    local got
    got=$("$python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["device"])' "$work/example.json" 2>/dev/null)
    if [ "$got" = "$want" ]; then
        result=passed
        found=yes
    else
        found=no
    fi
    figure="device ${got:-none}; $gpu; torch $torch_version"
    # A config too large for the card (about 380 GiB: width 4096, fc1 65536) is refused up
    # front against what the card holds, read from the CUDA runtime (on the CPU: the
    # host's memory).
    local holds="cuda:0 holds"
    [ "$device" = cpu ] && holds="available"
    runc 60 "$svcca" train configs/quickstart.toml --out "$work/too-large" --device "$device" --set model.width=4096 --set model.fc1=65536
    if refused $? "$holds"; then
        figure="$figure; too large refused ($holds)"
    else
        result=FAILED
        figure="$figure; a config too large for the card was not refused naming what it holds"
    fi
}

c_fixtures() {
    runc 180 "$python" scripts/gpu_check.py --gpu "$device" --out "$out" "${gpu_check_sizes[@]}" && result=passed
    local worst
    worst=$(grep -o 'worst [a-z0-9:]*-vs-cpu difference [^ ]*' "$logf" | awk '{ print $NF }')
    figure="max |diff| ${worst:-none} (tolerance 1e-6)"
}

# Max |difference| between two analyses' similarity matrices (analysis/steps/*.json).
max_similarity_diff() {
    "$python" - "$1" "$2" <<'PY'
import glob, json, os, sys
worst, n = 0.0, 0
files = sorted(glob.glob(os.path.join(sys.argv[1], "analysis", "steps", "*.json")))
assert files, "no analysis/steps/*.json in " + sys.argv[1]
for fa in files:
    a = json.load(open(fa))
    b = json.load(open(os.path.join(sys.argv[2], "analysis", "steps", os.path.basename(fa))))
    assert a["layers"] == b["layers"], fa
    for ra, rb in zip(a["matrix"], b["matrix"]):
        for x, y in zip(ra, rb):
            assert (x is None) == (y is None), (fa, x, y)
            if x is not None:
                worst, n = max(worst, abs(x - y)), n + 1
print(f"{worst:.2e} {n}")
PY
}

c_dynamics() {
    local run="$work/store" t0 t_cpu t_dev
    runc 150 "$svcca" train configs/quickstart.toml --out "$run-cpu" --device cpu --set "train.steps=$store_steps" \
        --set "checkpoints.every=$((store_steps / 2))" --set 'analysis.mode="store"' "${store_extra[@]}" || { figure="CPU training exit $?"; return; }
    cp -r "$run-cpu" "$run-dev"
    t0=$(now)
    runc 120 "$svcca" analyze "$run-cpu" --device cpu --no-plots || { figure="cpu analysis exit $?"; return; }
    t_cpu=$(since "$t0")
    t0=$(now)
    runc 120 "$svcca" analyze "$run-dev" --device "$device" --no-plots || { figure="$device analysis exit $?"; return; }
    t_dev=$(since "$t0")
    local diff
    diff=$(max_similarity_diff "$run-cpu" "$run-dev") || { figure="similarities not comparable"; return; }
    echo "max |diff| and similarities compared: $diff"
    "$python" -c "import sys; sys.exit(0 if float('${diff% *}') <= 1e-6 else 1)" && result=passed
    figure="max |diff| ${diff% *} over ${diff#* } similarities (tolerance 1e-6); analyze cpu ${t_cpu} s, $device ${t_dev} s"
}

# The CPU run trains from step 0; the device run resumes from a copy of the CPU run's
# step-0 checkpoint (the same initial weights: libtorch's CPU and CUDA generators
# differ, and the quickstart's accuracy after 200 steps moves by 25 points from one
# initialisation to another). Both take train.deterministic=true (the folder's config
# must match; it is about cuDNN and TF32, so a no-op on the CPU).
c_training() {
    local cpu="$work/train-cpu" dev="$work/train-dev" note="" status
    local sets=(--set "train.steps=$train_steps" --set train.eval_every=20 --set "checkpoints.every=$train_steps")
    local det=(--set train.deterministic=true)
    runc 150 "$svcca" train configs/quickstart.toml --out "$cpu" --device cpu "${sets[@]}" "${det[@]}"
    status=$?
    if refused "$status" deterministic; then
        note="train.deterministic refused by this binary; compared without it"
        echo "!! $note"
        det=()
        rm -rf "$cpu"
        runc 150 "$svcca" train configs/quickstart.toml --out "$cpu" --device cpu "${sets[@]}"
        status=$?
    fi
    [ "$status" = 0 ] || { figure="${note:+$note; }CPU run exit $status"; return; }
    mkdir -p "$dev/checkpoints"
    cp "$cpu/config.toml" "$dev/"
    cp "$cpu/checkpoints/step-00000000.safetensors" "$dev/checkpoints/"
    runc 150 "$svcca" train configs/quickstart.toml --out "$dev" --device "$device" "${sets[@]}" "${det[@]}" \
        || { figure="${note:+$note; }$device run exit $?"; return; }
    grep -q "resuming from .*(step 0)" "$logf" || { figure="${note:+$note; }$device run did not start from the CPU's step 0"; return; }
    cp "$cpu/metrics.csv" "$out/train_metrics_cpu.csv"
    cp "$dev/metrics.csv" "$out/train_metrics_device_$device.csv"
    # Float32 trajectories on different hardware (cuDNN's and the CPU's kernels sum in
    # different orders) are not equal, and SGD carries every rounding difference
    # forward: the tolerances are for "the same training", not for equality.
    local verdict
    verdict=$("$python" - "$cpu/metrics.csv" "$dev/metrics.csv" <<'PY'
import csv, sys
a, b = ({int(r["step"]): r for r in csv.DictReader(open(p))} for p in sys.argv[1:3])
steps = sorted(s for s in set(a) & set(b) if a[s]["train_loss"] and b[s]["train_loss"])
loss = max(abs(float(a[s]["train_loss"]) - float(b[s]["train_loss"])) for s in steps)
for s in steps:
    print(f"step {s}: train loss cpu {a[s]['train_loss']} device {b[s]['train_loss']}", file=sys.stderr)
last = max(steps)
acc = 100 * abs(float(a[last]["test_acc"]) - float(b[last]["test_acc"]))
ok = loss <= 0.05 and acc <= 2.0
print(f"{'passed' if ok else 'FAILED'}|max |train loss diff| {loss:.4f} over {len(steps)} rows (tol 0.05), "
      f"final test acc {100 * float(a[last]['test_acc']):.2f} vs {100 * float(b[last]['test_acc']):.2f} (diff {acc:.2f} pts, tol 2)")
PY
)
    echo "$verdict"
    [ -n "$note" ] || result=${verdict%%|*}
    figure="${note:+$note; }${verdict#*|}"
}

c_freeze() {
    local dir="$work/freeze"
    runc 240 "$svcca" experiment freeze configs/synthetic_freeze.toml --seeds 1 --out "$dir" --device "$device" \
        --set "train.steps=$freeze_steps" --set "train.eval_every=$((freeze_steps / 2))" --set "checkpoints.every=$freeze_steps" \
        || { figure="exit $?"; return; }
    cp "$dir"/summary.csv "$dir"/runs.csv "$out/" 2>/dev/null
    local on others
    on=$(grep -c " on $want (" "$logf")
    others=$(grep " on [a-z]*:*[0-9]* (" "$logf" | grep -vc " on $want (")
    [ "$on" -ge 2 ] && [ "$others" = 0 ] && result=passed
    figure="$on runs trained on $want, $others elsewhere"
}

c_resume() {
    local dir="$work/resume" pid status1 status2 waited=0 row most
    local args=(train configs/quickstart.toml --out "$dir" --device "$device" --set "train.steps=$resume_steps"
                --set "train.eval_every=$resume_eval" --set "checkpoints.every=$((resume_steps / 2))")
    echo "+ $svcca ${args[*]} &   (SIGUSR1 once metrics.csv reaches step $signal_at)"
    # Not under `timeout` (it would take the signal itself): a watchdog below instead.
    "$svcca" "${args[@]}" &
    pid=$!
    most=$(($(limit 120) * 10))  # tenths of a second
    while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt "$most" ]; do
        row=$(tail -n 1 "$dir/metrics.csv" 2>/dev/null | cut -d, -f1)
        [ -n "$row" ] && [ "$row" != step ] && [ "$row" -ge "$signal_at" ] 2>/dev/null && break
        sleep 0.1
        waited=$((waited + 1))
    done
    echo "+ kill -USR1 $pid (metrics at step ${row:-none})"
    kill -USR1 "$pid" 2>/dev/null
    waited=0
    while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 600 ]; do sleep 0.1; waited=$((waited + 1)); done
    kill -0 "$pid" 2>/dev/null && { echo "!! still running 60 s after SIGUSR1: killed"; kill -KILL "$pid"; }
    wait "$pid"
    status1=$?
    echo "+ exit $status1"
    local ckpt
    ckpt=$(ls "$dir/checkpoints" 2>/dev/null | grep -v 'step-00000000\.' | tail -n 1)  # the signal's
    runc 240 "$svcca" "${args[@]}"
    status2=$?
    local resumed=no rows
    grep -q "resuming from" "$logf" && resumed=yes
    # An uninterrupted run's rows: step 0, every eval_every and every checkpoint, once each.
    rows=$("$python" - "$dir/metrics.csv" "$resume_steps" "$resume_eval" "$((resume_steps / 2))" <<'PY'
import csv, sys
steps = [int(r["step"]) for r in csv.DictReader(open(sys.argv[1]))]
n, every, ckpt = (int(x) for x in sys.argv[2:5])
want = sorted(set(range(0, n + 1, every)) | set(range(0, n + 1, ckpt)))
print(f"ok ({len(steps)})" if steps == want else f"{steps} (want {want})")
PY
)
    echo "metrics rows: $rows"
    [ "$status1" = 75 ] && [ -n "$ckpt" ] && [ "$status2" = 0 ] && [ "$resumed" = yes ] && [ "${rows%% *}" = ok ] && result=passed
    figure="signal exit $status1 (want 75), checkpoint ${ckpt:-none}; rerun exit $status2, resumed $resumed, metrics rows ${rows:0:60}"
}

# analyze RUN: wall seconds and peak GPU memory (GiB, max of nvidia-smi's samples: the
# whole card, CUDA context included) into `seconds` and `peak`.
timed_analyze() {
    local run=$1 sampler="" samples="$work/memory-$(basename "$1").txt"
    if [ "$device" = cuda ] && command -v nvidia-smi >/dev/null; then
        nvidia-smi -i 0 --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$samples" 2>&1 &
        sampler=$!
    fi
    local t0 status
    t0=$(now)
    runc 240 "$svcca" analyze "$run" --device "$device" --no-plots
    status=$?
    seconds=$(since "$t0")
    peak="n/a (no GPU)"
    if [ -n "$sampler" ]; then
        kill "$sampler" 2>/dev/null
        wait "$sampler" 2>/dev/null
        peak=$(awk '$1 ~ /^[0-9]+$/ && $1 > m { m = $1 } END { printf "%.2f GiB", m / 1024 }' "$samples")
    fi
    echo "analyze $run: $seconds s, peak $peak"
    return "$status"
}

c_paper() {
    local data="$work/cifar" run="$work/paper" seconds peak
    local sets=(--set "data.path=\"$data\"" --set train.steps=20 --set checkpoints.every=20 --set train.eval_every=20 "${paper_narrow[@]}")
    runc 120 "$svcca" data synthetic cifar10 --dir "$data" "${paper_data[@]}" || { figure="data exit $?"; return; }
    runc 180 "$svcca" train configs/cifar10_convnet.toml --out "$run-f64" --device "$device" "${sets[@]}" || { figure="training exit $?"; return; }
    cp -r "$run-f64" "$run-f32"
    timed_analyze "$run-f64" || { figure="float64 analysis failed"; return; }
    result=passed
    figure="float64 ${seconds} s, peak ${peak}"
    # The same weights analysed in float32: a rerun of `svcca train` into the finished
    # copy only takes the new [analysis] setting into its config.
    local status
    runc 60 "$svcca" train configs/cifar10_convnet.toml --out "$run-f32" --device "$device" "${sets[@]}" --set 'analysis.precision="float32"'
    status=$?
    if refused "$status" precision; then
        figure="$figure; float32 skipped (analysis.precision refused by this binary)"
    elif [ "$status" != 0 ]; then
        result=FAILED
        figure="$figure; float32 config rerun failed"
    elif timed_analyze "$run-f32"; then
        local diff
        diff=$(max_similarity_diff "$run-f64" "$run-f32")
        figure="$figure; float32 ${seconds} s, peak ${peak}, max |diff| vs float64 ${diff% *}"
    else
        result=FAILED
        figure="$figure; float32 analysis failed"
    fi
    cp "$run-f64/analysis/to_final.csv" "$out/paper_to_final_f64.csv" 2>/dev/null
}

c_throughput() {
    runc 240 "$python" scripts/bench_train.py --device "$device" "${bench[@]}" && result=passed
    # "| convnet (paper, ...) | 1234 | 1300 | 0.95 |" -> "convnet 1234 vs 1300 img/s (0.95)"
    figure=$(awk -F'|' '/^\| (convnet|ResNet-20)/ { gsub(/ /, "", $3); gsub(/ /, "", $4); gsub(/ /, "", $5);
        split($2, w, " "); printf "%s%s %s vs %s img/s (%s)", sep, w[1], $3, $4, $5; sep = "; " }' "$logf")
    figure="svcca vs PyTorch eager: ${figure:-no rows}"
}

check "1 ${device^^} found" c_found 1-found.log
check "2 fixtures $device vs cpu" c_fixtures 2-fixtures.log
check "3 dynamics analysis $device vs cpu" c_dynamics 3-dynamics.log
check "4 training $device vs cpu" c_training 4-training.log
check "5 experiment freeze on $device" c_freeze 5-freeze.log
check "6 SIGUSR1 and resume on $device" c_resume 6-resume.log
check "7 paper convnet analysis" c_paper 7-paper.log
check "8 training throughput" c_throughput 8-throughput.log

[ "${KEEP_WORK:-0}" = 1 ] && echo "scratch kept: $work" >&2 || rm -rf "$work"

# ---------------------------------------------------------------- the table, last
{
    cat "$out/header.txt"
    awk -F'\t' '{ printf "%-36s %-18s %s%s\n", $1, $2, $3, ($4 == "" ? "" : "  [" $4 "]") }' "$checks"
    echo "total $SECONDS s; logs and tables in $out"
} > "$out/gpu_session.txt"
echo
cat "$out/gpu_session.txt"
