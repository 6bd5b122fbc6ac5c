"""Paper-size rehearsal of the Python module: the recorder and `svcca.compare` on the paper's
CIFAR-10 convnet (width 64, probe 2560, configs/cifar10_convnet.toml) built in plain PyTorch, then
`svcca analyze` of what was recorded. No CIFAR-10 is needed: the probe and the training batches are
random images (the memory and time do not depend on the values).

    .venv/bin/python scripts/rehearse_python.py [--probe 2560] [--steps 3] [--dtype float32]
        [--batch-size 256] [--out runs/rehearse-python] [--threads N]

Each stage runs in a process of its own under GNU time (wall time and peak resident memory):
- record: the convnet (c1 c2 bn1 p1 c3 c4 c5 bn2 p2 fc1 bn3 fc2 bn4 logits, as svcca's own) is
  recorded on the probe at --steps steps, one SGD step on a random batch between them, every layer
  (about 1.1 MB of float32 per datapoint: 2.9 GB a step at probe 2560). The stage also reports its
  peak before the first step (torch, the model, the probe), so the recorder's own share is the
  difference.
- analyze: `svcca analyze` of the folder (the default memory budget).
- compare: `svcca.compare(a, b)` of c2 (N x 64 x 32 x 32, the largest layer) at the first and last
  recorded steps, by the DFT (`conv="dft"`, the paper's), read from the step files. The stage reports
  its peak with the two arrays loaded, before the call, and the similarity.

Prints a Markdown table at the end. Rerunning starts again in a fresh --out (an existing one is
refused: the recorder never records a step twice).
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench_common import ROOT, SVCCA, cpu_model, load_average, log, run_measured

LAYERS = ["c1", "c2", "bn1", "p1", "c3", "c4", "c5", "bn2", "p2", "fc1", "bn3", "fc2", "bn4", "logits"]


def convnet(width=64, classes=10):
    """The paper's convnet as svcca builds it (src/model/convnet.rs): 3 x 3 convs with padding 1
    and their ReLUs, 2 x 2 max pooling, fc1 512 and fc2 256 with their ReLUs, batch norms."""
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            conv = lambda cin: nn.Sequential(nn.Conv2d(cin, width, 3, padding=1), nn.ReLU())
            self.c1, self.c2, self.bn1, self.p1 = conv(3), conv(width), nn.BatchNorm2d(width), nn.MaxPool2d(2)
            self.c3, self.c4, self.c5 = conv(width), conv(width), conv(width)
            self.bn2, self.p2 = nn.BatchNorm2d(width), nn.MaxPool2d(2)
            self.fc1 = nn.Sequential(nn.Flatten(), nn.Linear(width * 8 * 8, 512), nn.ReLU())
            self.bn3 = nn.BatchNorm1d(512)
            self.fc2 = nn.Sequential(nn.Linear(512, 256), nn.ReLU())
            self.bn4 = nn.BatchNorm1d(256)
            self.logits = nn.Linear(256, classes)

        def forward(self, x):
            for name in LAYERS:
                x = getattr(self, name)(x)
            return x

    return Net()


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stage_record(args):
    import torch
    import svcca

    torch.manual_seed(0)
    model = convnet()
    probe = torch.randn(args.probe, 3, 32, 32)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    before = peak_mib()
    seconds = []
    with svcca.Recorder(args.out, probe, LAYERS, batch_size=args.batch_size, dtype=args.dtype) as recorder:
        for step in range(args.steps):
            if step > 0:
                x, y = torch.randn(128, 3, 32, 32), torch.randint(0, 10, (128,))
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(model(x), y).backward()
                optimizer.step()
            t = time.perf_counter()
            recorder.step(model, step)
            seconds.append(time.perf_counter() - t)
            log(f"recorded step {step} in {seconds[-1]:.1f} s")
    files = sorted((Path(args.out) / "activations").glob("step-*.safetensors"))
    print(json.dumps({"before_mib": before, "step_s": sorted(seconds)[len(seconds) // 2],
                      "file_mib": files[0].stat().st_size / 2**20}))


def read_layer(path, name):
    """One tensor of a safetensors file, as a numpy array (the header, then the bytes)."""
    import numpy as np

    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        entry = json.loads(f.read(n))[name]
        begin, end = entry["data_offsets"]
        f.seek(8 + n + begin)
        dtype = {"F32": np.float32, "F16": np.float16}[entry["dtype"]]
        return np.frombuffer(f.read(end - begin), dtype=dtype).reshape(entry["shape"])


def stage_compare(args):
    import svcca

    files = sorted((Path(args.out) / "activations").glob("step-*.safetensors"))
    a, b = read_layer(files[0], "c2"), read_layer(files[-1], "c2")
    before = peak_mib()
    t = time.perf_counter()
    result = svcca.compare(a, b, conv="dft")
    print(json.dumps({"before_mib": before, "seconds": time.perf_counter() - t,
                      "similarity": result.similarity, "shape": list(a.shape)}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probe", type=int, default=2560)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--dtype", choices=["float32", "float16"], default="float32")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--out", default="runs/rehearse-python")
    parser.add_argument("--threads", type=int, default=0, help="torch and rayon threads (0: their defaults)")
    parser.add_argument("--stage", choices=["record", "compare"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.stage == "record":
        return stage_record(args)
    if args.stage == "compare":
        return stage_compare(args)

    if args.steps < 2 or args.probe < 2:
        sys.exit("--steps and --probe: at least 2 each")
    out = ROOT / args.out
    if out.exists():
        sys.exit(f"{out} exists: pass a new --out (the recorder never records a step twice)")
    if not SVCCA.is_file():
        sys.exit(f"{SVCCA} does not exist: build it first with scripts/setup.sh")
    env_threads = {"RAYON_NUM_THREADS": str(args.threads)} if args.threads else {}
    os.environ.update(env_threads)
    load = load_average()
    own = [sys.executable, __file__, "--probe", str(args.probe), "--steps", str(args.steps), "--dtype", args.dtype,
           "--batch-size", str(args.batch_size), "--out", str(out), "--threads", str(args.threads)]
    rows = []
    log(f"record: probe {args.probe}, {args.steps} steps, {args.dtype}")
    stdout, wall, peak = run_measured(own + ["--stage", "record"])
    rec = json.loads(stdout.strip().splitlines()[-1])
    rows.append(("record (Python, `svcca.Recorder`)", wall, peak,
                 f"{rec['before_mib']:.0f} MiB before the first step (torch, model, probe); "
                 f"a step file {rec['file_mib']:.0f} MiB; {rec['step_s']:.1f} s a step"))
    log("analyze")
    _, wall, peak = run_measured([SVCCA, "analyze", out])
    table = (out / "analysis" / "similarity.csv")
    rows.append(("`svcca analyze` (default budget)", wall, peak, f"{table} written" if table.exists() else "no similarity.csv"))
    log("compare")
    stdout, wall, peak = run_measured(own + ["--stage", "compare"])
    cmp = json.loads(stdout.strip().splitlines()[-1])
    rows.append((f"`svcca.compare` of c2 {tuple(cmp['shape'])}, first vs last step", wall, peak,
                 f"{cmp['before_mib']:.0f} MiB with both arrays loaded; the call {cmp['seconds']:.1f} s; "
                 f"similarity {cmp['similarity']:.4f}"))
    print()
    print(f"Paper-size rehearsal of the Python module: convnet width 64, probe {args.probe}, {args.steps} steps, "
          f"{args.dtype}, batches of {args.batch_size}")
    print(f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores; load {load} at the start, {load_average()} at the end;"
          f" {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print()
    print("| stage | wall (s) | peak RSS (MiB) | notes |")
    print("|---|---:|---:|---|")
    for name, wall, peak, notes in rows:
        print(f"| {name} | {wall:.0f} | {peak:.0f} | {notes} |")


if __name__ == "__main__":
    main()
