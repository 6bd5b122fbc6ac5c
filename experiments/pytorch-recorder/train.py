"""Learning dynamics of a network svcca does not build: a small convnet trained on
Fashion-MNIST in plain PyTorch, its layers recorded at checkpoints by svcca.Recorder
inside the training loop, then analysed by `svcca analyze` (the paper's Figure 4).

    .venv/bin/python experiments/pytorch-recorder/train.py --out runs/pytorch-recorder
    target/release/svcca analyze runs/pytorch-recorder

Data: the four Fashion-MNIST IDX .gz files in --data (Debian/Ubuntu:
`apt-get install dataset-fashion-mnist` puts them at the default). Nothing here is
svcca's but the recorder: the model, the data loading and the loop are PyTorch's.
"""

import argparse
import gzip
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

import svcca

LAYERS = ["in", "conv1", "conv2", "conv3", "fc1", "fc2", "logits"]


class ConvNet(nn.Module):
    """conv-conv-pool-conv-pool, then three dense layers; `in` records the input."""

    def __init__(self):
        super().__init__()
        setattr(self, "in", nn.Identity())
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
        self.conv3 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(32 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 64)
        self.logits = nn.Linear(64, 10)

    def forward(self, x):
        x = getattr(self, "in")(x)
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.max_pool2d(F.relu(self.conv3(x)), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return self.logits(F.relu(self.fc2(x)))


def idx(path):
    """An IDX file (gzipped) as a numpy array."""
    data = gzip.open(path).read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(folder, split):
    images = idx(Path(folder) / f"{split}-images-idx3-ubyte.gz").astype(np.float32) / 255.0
    labels = idx(Path(folder) / f"{split}-labels-idx1-ubyte.gz").astype(np.int64)
    images = (images - 0.2860) / 0.3530  # Fashion-MNIST's mean and std
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--out", default="runs/pytorch-recorder")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--every", type=int, default=60, help="record every N steps (and step 0)")
    parser.add_argument("--probe", type=int, default=1000, help="test images the layers are recorded on")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    train_x, train_y = load(args.data, "train")
    test_x, test_y = load(args.data, "t10k")
    probe = test_x[torch.randperm(len(test_x))[:args.probe]]
    model = ConvNet()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, args.steps)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # The analysis's settings: an [analysis] table only. Conv layers meet dense ones by
    # their channel means (a probe of 1000 is too small to flatten them).
    (out / "config.toml").write_text('[analysis]\nconv = "dft"\nconv_dense = "avgpool"\n')

    started = time.perf_counter()
    recording = 0.0
    with svcca.Recorder(out, probe, LAYERS, dtype="float16") as recorder:
        for step in range(args.steps + 1):
            if step % args.every == 0 or step == args.steps:
                t = time.perf_counter()
                recorder.step(model, step)
                recording += time.perf_counter() - t
            if step == args.steps:
                break
            batch = torch.randint(len(train_x), (128,))
            loss = F.cross_entropy(model(train_x[batch]), train_y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            if (step + 1) % 100 == 0:
                print(f"step {step + 1}: loss {loss.item():.3f}", flush=True)
    model.eval()
    with torch.no_grad():
        accuracy = (model(test_x).argmax(1) == test_y).float().mean().item()
    total = time.perf_counter() - started
    print(f"test accuracy {accuracy:.4f}; {total:.1f}s ({recording:.1f}s recording)")
    print(f"now: target/release/svcca analyze {out}")


if __name__ == "__main__":
    main()
