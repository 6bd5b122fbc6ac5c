"""Helpers shared by the benchmark drivers scripts/bench_compare.py and scripts/bench_dft.py.

Not a script of its own. The drivers are run as `.venv/bin/python scripts/bench_X.py` from the
repository root, so Python puts scripts/ first on sys.path and `import bench_common` finds this
file. It holds what both drivers do the same way: run a command under GNU time for its wall time
and peak RSS, read the JSON result it prints, time several commands alternately, and collect the
facts of the machine and the build for the head of the Markdown section.
"""

import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SVCCA = ROOT / "target" / "release" / "svcca"
TIME = "/usr/bin/time"  # GNU time
TOLERANCE = 1e-6


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def check_tools():
    """Exit with a message unless the release binary and GNU time are there."""
    if not SVCCA.is_file():
        sys.exit(f"{SVCCA} does not exist: build it first with scripts/setup.sh")
    if not os.access(TIME, os.X_OK):
        sys.exit(f"{TIME} (GNU time) is needed to measure peak memory: install it "
                 "(e.g. apt-get install time)")


def parse_args(parser):
    """Add --out (last), parse the command line, and check --repeats (the caller adds it) and the tools."""
    parser.add_argument("--out", type=Path, help="also write the Markdown section to this file")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    check_tools()
    return args


def above_tolerance(worst):
    """The mark a log line gets when a difference is above TOLERANCE, else ''."""
    return "" if worst <= TOLERANCE else f"  ** ABOVE {TOLERANCE:g} **"


# ---------------------------------------------------------------- runs

def run_measured(cmd):
    """Run cmd under /usr/bin/time; return (stdout, wall seconds, peak RSS in MiB) of that child.

    GNU time, not os.wait4 or getrusage(RUSAGE_CHILDREN): Linux charges a child that this
    process spawns with this process's own peak RSS (several hundred MiB once torch is loaded
    and the data converted, or after generating the data in numpy), whereas the small time
    process forks the command itself.
    """
    with tempfile.NamedTemporaryFile("r") as timing, \
            tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        full = [TIME, "-f", "%e %M", "-o", timing.name] + [str(c) for c in cmd]
        proc = subprocess.run(full, stdout=out, stderr=err, cwd=ROOT)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
        fields = timing.read().split()
    if proc.returncode != 0:
        sys.exit(f"command failed (exit {proc.returncode}): {shlex.join(map(str, cmd))}\n"
                 + stderr[-3000:])
    wall, peak_kib = float(fields[-2]), float(fields[-1])
    return stdout, wall, peak_kib / 1024


def parse_json(stdout, cmd):
    """The result: the one JSON object on stdout (log lines go to stderr); exits if there is none."""
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    sys.exit(f"no JSON on stdout of {shlex.join(map(str, cmd))}:\n{stdout[-2000:]}")


def compute_seconds(result):
    """Compute time a tool reports, file loading left out: svcca's JSON `seconds` less its
    `timings.read`; the numpy baselines' `seconds` already exclude loading."""
    seconds = result.get("seconds", float("nan"))
    return seconds - result.get("timings", {}).get("read", 0.0)


def timed_runs(cmds, repeats, tag, show_compute=True):
    """Run each command of cmds ({name: argv}) repeats times, alternating.

    Returns (median wall seconds, median compute seconds (see compute_seconds), max peak MiB),
    each a dict by name, and the parsed results of every repeat, a list of {name: result}.
    show_compute: whether the progress line of each run names its compute time.
    """
    walls = {k: [] for k in cmds}
    peaks = {k: [] for k in cmds}
    inner = {k: [] for k in cmds}
    all_results = []
    for r in range(repeats):
        results = {}
        for name, cmd in cmds.items():
            stdout, wall, peak = run_measured(cmd)
            results[name] = parse_json(stdout, cmd)
            walls[name].append(wall)
            peaks[name].append(peak)
            inner[name].append(compute_seconds(results[name]))
            compute = f"{inner[name][-1]:.3f} s compute, " if show_compute else ""
            log(f"[{tag}] repeat {r + 1}/{repeats} {name}: {wall:.3f} s wall, "
                f"{compute}{peak:.0f} MiB peak")
        all_results.append(results)
    return ({k: statistics.median(v) for k, v in walls.items()},
            {k: statistics.median(v) for k, v in inner.items()},
            {k: max(v) for k, v in peaks.items()},
            all_results)


# ---------------------------------------------------------------- report

def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def load_average():
    """The 1, 5 and 15 minute load averages as one string, or 'unknown'.

    Read it when the run begins: the timings are only as good as an idle machine.
    """
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def thread_variables():
    """The BLAS / OpenMP thread variables that are set, or a line saying none is."""
    return ", ".join(f"{k}={os.environ[k]}" for k in
                     ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
                     if k in os.environ) or "no thread variables set"


def _run_text(cmd):
    return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()


def header(title, cpu_extra=()):
    """The first lines of a Markdown section: title with the date, command, CPU, versions.

    cpu_extra: more facts for the end of the CPU line (e.g. thread variables, load average).
    """
    import numpy
    try:
        import torch
        torch_info = f"torch {torch.__version__}"
        threads = [f"torch threads {torch.get_num_threads()}"]
    except ImportError:
        torch_info, threads = "torch not importable", []

    date = _run_text(["date", "-u"])
    version = _run_text([str(SVCCA), "--version"])
    built = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(SVCCA.stat().st_mtime))
    rev = _run_text(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]) or "unknown"
    dirty = _run_text(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"])
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    cpu = [f"{cpu_model()}, {cores} logical cores ({usable} usable by this process)",
           *threads, *cpu_extra]
    return [
        f"### {title} ({date})",
        "",
        f"- Command: `{shlex.join(getattr(sys, 'orig_argv', [sys.executable] + sys.argv))}`",
        f"- CPU: {'; '.join(cpu)}",
        f"- {version} (binary built {built}; git {rev}{' with uncommitted changes' if dirty else ''}); "
        f"numpy {numpy.__version__}; {torch_info}; Python {sys.version.split()[0]}",
    ]


def emit(text, out=None):
    """Print the Markdown section, and with out (--out) also write it to that file."""
    print(text, end="")
    if out:
        out.write_text(text)
        log(f"wrote {out}")
