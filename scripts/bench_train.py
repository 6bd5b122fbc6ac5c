#!/usr/bin/env python3
"""Training throughput (images/s): svcca vs plain PyTorch eager, same network and batch.

Runs on demand, not in the tests. For each network (the paper's convnet, ResNet-20) it
times `svcca train` on the built-in synthetic set (32 x 32 x 3, CIFAR-shaped) and the
same network, batch, augmentation (crop after 4-pixel padding, flip, on the device) and
optimiser (SGD, Nesterov momentum, weight decay) written in PyTorch eager, in one run,
alternating the two. Warm-up steps are excluded from both.

    scripts/bench_train.py [--steps 20] [--warmup 3] [--batch 128] [--device cpu] [--amp]

svcca's time comes from its own metrics.csv (wall time between the row after the warm-up
and the last row); the trainer evaluates its test set (16 images here) at both rows, which
is counted against svcca.
"""
import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "svcca")


# ---- the networks, as svcca builds them (src/model/) ----
class ConvNet(nn.Module):
    def __init__(self, width=64, fc1=512, fc2=256, classes=10, cin=3, size=32):
        super().__init__()
        conv = lambda i: nn.Conv2d(i, width, 3, padding=1)
        self.c1, self.c2 = conv(cin), conv(width)
        self.bn1 = nn.BatchNorm2d(width)
        self.c3, self.c4, self.c5 = conv(width), conv(width), conv(width)
        self.bn2 = nn.BatchNorm2d(width)
        self.fc1 = nn.Linear(width * (size // 4) ** 2, fc1)
        self.bn3 = nn.BatchNorm1d(fc1)
        self.fc2 = nn.Linear(fc1, fc2)
        self.bn4 = nn.BatchNorm1d(fc2)
        self.logits = nn.Linear(fc2, classes)

    def forward(self, x):
        x = F.max_pool2d(self.bn1(F.relu(self.c2(F.relu(self.c1(x))))), 2)
        x = F.relu(self.c5(F.relu(self.c4(F.relu(self.c3(x))))))
        x = F.max_pool2d(self.bn2(x), 2).flatten(1)
        x = self.bn3(F.relu(self.fc1(x)))
        x = self.bn4(F.relu(self.fc2(x)))
        return self.logits(x)


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.stride, self.extra = stride, cout - cin

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.stride != 1 or self.extra:
            s = x[:, :, :: self.stride, :: self.stride]
            x = F.pad(s, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
        return F.relu(y + x)


class ResNet(nn.Module):
    def __init__(self, n=3, width=16, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        blocks, cin = [], width
        for stage in range(3):
            cout = width << stage
            for b in range(n):
                blocks.append(Block(cin, cout, 2 if stage and b == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.blocks(F.relu(self.bn1(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def augment(images, pad, gen):
    """Crop after zero padding and flip, as one gather (what svcca does)."""
    n, c, h, w = images.shape
    dev = images.device
    p = F.pad(images, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n, 1), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n, 1), generator=gen)
    flip = torch.randint(0, 2, (n, 1), generator=gen).bool()
    ar = torch.arange(w)
    cols = dx + torch.where(flip, w - 1 - ar, ar)
    rows = dy + torch.arange(h)
    nhwc = p.permute(0, 2, 3, 1)
    out = nhwc[torch.arange(n).view(n, 1, 1), rows.to(dev).view(n, h, 1), cols.to(dev).view(n, 1, w)]
    return out.permute(0, 3, 1, 2).contiguous()


def torch_images_per_second(net, args, device):
    torch.manual_seed(0)
    net = net.to(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    data = torch.randint(0, 256, (10000, 3, 32, 32), dtype=torch.uint8, device=device)
    labels = torch.randint(0, 10, (10000,), device=device)
    gen = torch.Generator().manual_seed(0)
    mean = torch.full((1, 3, 1, 1), 0.5, device=device)
    scaler = torch.amp.GradScaler(enabled=args.amp)

    def step(i):
        idx = torch.randint(0, 10000, (args.batch,), generator=gen).to(device)
        x = augment(data.index_select(0, idx), 4, gen).float() / 255.0 - mean
        with torch.autocast(device_type=device.type, enabled=args.amp):
            loss = F.cross_entropy(net(x), labels.index_select(0, idx))
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return loss

    for i in range(args.warmup):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for i in range(args.steps):
        loss = step(i)
    loss.item()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return args.steps * args.batch / (time.perf_counter() - t)


SVCCA_CONFIG = """
[data]
dataset = "synthetic"
train_size = 10000
test_size = 16
crop_padding = 4
flip = true
[model]
{model}
[train]
device = "{device}"
{threads}
batch_size = {batch}
steps = {steps}
lr = 0.05
eval_every = {warmup}
eval_batch_size = 16
[checkpoints]
every = 1000000
at_start = false
"""


def svcca_images_per_second(model, args):
    with tempfile.TemporaryDirectory() as d:
        cfg = os.path.join(d, "bench.toml")
        with open(cfg, "w") as f:
            f.write(SVCCA_CONFIG.format(model=model, device=args.device, batch=args.batch,
                                        steps=args.warmup + args.steps, warmup=args.warmup,
                                        threads=f"threads = {args.threads}" if args.threads else ""))
        env = dict(os.environ, SVCCA_LOG="warn")
        subprocess.run([BIN, "train", cfg, "--out", os.path.join(d, "run")], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        with open(os.path.join(d, "run", "metrics.csv")) as f:
            rows = {int(r["step"]): float(r["wall_seconds"]) for r in csv.DictReader(f)}
        end = args.warmup + args.steps
        return args.steps * args.batch / (rows[end] - rows[args.warmup])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", action="store_true", help="PyTorch side: autocast (svcca trains in float32)")
    ap.add_argument("--repeats", type=int, default=3, help="alternating runs per side; the best is reported")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads for both sides (0: libtorch's default)")
    args = ap.parse_args()
    if not os.path.exists(BIN):
        sys.exit(f"{BIN} is missing: run scripts/setup.sh (or cargo build --release) first")
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    nets = [
        ("convnet (paper, width 64, fc 512/256)", 'arch = "convnet"', lambda: ConvNet(), 1),
        ("ResNet-20", 'arch = "resnet"\ndepth = 20', lambda: ResNet(3), 1),
        # A linear model costs almost nothing: this row is the data pipeline (batch
        # gather, crop, flip, normalise) plus an optimiser step.
        ("linear (data pipeline + augmentation)", 'arch = "linear"', lambda: nn.Sequential(nn.Flatten(), nn.Linear(3072, 10)), 50),
    ]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, "
          f"batch {args.batch}, {args.steps} timed steps after {args.warmup} warm-up")
    print("| network | svcca images/s | PyTorch eager images/s | svcca / PyTorch |")
    print("|---|---:|---:|---:|")
    for name, model, make, factor in nets:
        # Cheap networks run more steps, so that the timed span stays measurable.
        run_args = argparse.Namespace(**{**vars(args), "steps": args.steps * factor})
        ours, theirs = [], []
        for _ in range(args.repeats):
            ours.append(svcca_images_per_second(model, run_args))
            theirs.append(torch_images_per_second(make(), run_args, device))
        o, t = max(ours), max(theirs)
        spread = lambda v: f" (runs: {', '.join(f'{x:.0f}' for x in v)})" if len(v) > 1 else ""
        print(f"<!-- {name}: svcca{spread(ours)}, PyTorch{spread(theirs)} -->", file=sys.stderr)
        print(f"| {name} | {o:.0f} | {t:.0f} | {o / t:.2f} |", flush=True)


if __name__ == "__main__":
    main()
