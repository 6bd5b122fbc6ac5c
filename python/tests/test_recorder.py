"""svcca.Recorder: a PyTorch model's activations recorded inside a plain training loop,
in the activation-folder layout that `svcca analyze` reads, and its refusals."""

import json
import struct

import numpy as np
import pytest
import torch
from torch import nn
import torch.nn.functional as F

import svcca
from conftest import run_cli

LAYERS = ["conv1", "conv2", "fc1", "out"]


class Net(nn.Module):
    """A small convnet: 1x16x16 inputs, 3 classes."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.fc1 = nn.Linear(6 * 4 * 4, 12)
        self.out = nn.Linear(12, 3)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.out(F.relu(self.fc1(x.flatten(1))))

    def layers(self, x):
        """Every recorded layer's output, computed by hand (not by hooks)."""
        c1 = self.conv1(x)
        c2 = self.conv2(F.max_pool2d(F.relu(c1), 2))
        f1 = self.fc1(F.max_pool2d(F.relu(c2), 2).flatten(1))
        return [c1, c2, f1, self.out(F.relu(f1))]


def read_safetensors(path):
    """{name: float32 array} of a safetensors file (its format read directly)."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        assert entry["dtype"] == "F32", entry
        start, end = entry["data_offsets"]
        out[name] = np.frombuffer(data[8 + n + start:8 + n + end], dtype="<f4").reshape(entry["shape"])
    return out


def train(folder, steps=(0, 10, 20, 30), batch_size=50):
    """Trains a Net for the last of `steps` SGD steps on a learnable toy task, recording
    LAYERS on a 120-image probe at `steps`; returns the net and the probe."""
    torch.manual_seed(0)
    net = Net()
    probe = torch.randn(120, 1, 16, 16)
    optimiser = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    with svcca.Recorder(folder, probe, LAYERS, batch_size=batch_size) as recorder:
        for step in range(steps[-1] + 1):
            if step in steps:
                recorder.step(net, step)
            if step == steps[-1]:
                break
            x = torch.randn(64, 1, 16, 16)
            y = (x[:, 0, :8].mean(dim=(1, 2)) > 0).long() + (x[:, 0, 8:].mean(dim=(1, 2)) > 0).long()
            loss = F.cross_entropy(net(x), y)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return net, probe


def test_a_training_loops_recordings_analyse_into_the_dynamics(tmp_path, svcca_binary):
    folder = tmp_path / "mine"
    net, probe = train(folder)
    assert net.training, "step() must give the model back in training mode"
    assert all(not getattr(net, l)._forward_hooks for l in LAYERS), "step() must remove its hooks"
    acts = folder / "activations"
    manifest = json.loads((acts / "manifest.json").read_text())
    listed = [(e["step"], e["layer"]) for e in manifest["entries"]]
    assert listed == [(s, l) for s in (0, 10, 20, 30) for l in LAYERS]
    shapes = {e["layer"]: e["shape"] for e in manifest["entries"]}
    assert shapes == {"conv1": [120, 4, 16, 16], "conv2": [120, 6, 8, 8], "fc1": [120, 12], "out": [120, 3]}
    # The last step's files hold what the network computes on the probe (batched by the
    # recorder in 50s; computed here in one pass, by hand).
    stored = read_safetensors(acts / "step-00000030.safetensors")
    with torch.no_grad():
        for name, want in zip(LAYERS, net.eval().layers(probe)):
            assert np.allclose(stored[name], want.numpy(), atol=1e-5), name

    run_cli(svcca_binary, "analyze", folder)
    dynamics = json.loads((folder / "analysis" / "dynamics.json").read_text())
    assert [s["step"] for s in dynamics["steps"]] == [0, 10, 20, 30]
    final = dynamics["steps"][-1]
    assert final["layers"] == LAYERS
    assert np.allclose(np.diag(final["matrix"]), 1.0, atol=1e-9)
    # A cell of the first checkpoint is the pair compared on its own.
    first = read_safetensors(acts / "step-00000000.safetensors")
    cell = svcca.compare(first["conv2"], stored["conv2"], conv="dft", device="cpu").similarity
    assert abs(dynamics["steps"][0]["matrix"][1][1] - cell) <= 1e-9
    assert cell < 0.999, "training should have moved conv2"
    assert (folder / "plots" / "heatmaps.png").is_file()


def test_what_does_not_fit_the_folder_is_refused(tmp_path, svcca_binary):
    folder = tmp_path / "mine"
    torch.manual_seed(0)
    net, probe = Net(), torch.randn(20, 1, 16, 16)
    recorder = svcca.Recorder(folder, probe, LAYERS)
    recorder.step(net, 5)
    # While it is open the folder is locked: the analysis is refused, saying so.
    locked = run_cli(svcca_binary, "analyze", folder, check=False)
    assert locked.returncode == 2 and f"{folder}: in use by svcca" in locked.stderr, locked.stderr
    with pytest.raises(ValueError, match="holds steps up to 5 already"):
        recorder.step(net, 5)
    with pytest.raises(ValueError, match="holds steps up to 5 already"):
        recorder.step(net, 3)
    with pytest.raises(ValueError, match="no module 'conv9' in this model"):
        svcca.Recorder(tmp_path / "other", probe, ["conv9"]).step(net, 0)
    recorder.close()
    with pytest.raises(ValueError, match="closed"):
        recorder.step(net, 6)
    # Other layers than at the first step.
    with svcca.Recorder(folder, probe, ["conv1", "fc1"]) as again:
        with pytest.raises(ValueError, match="every step holds the same layers"):
            again.step(net, 6)
    # Nothing half-written: the folder still holds step 5 alone, and analyses.
    files = sorted(p.name for p in (folder / "activations").iterdir() if not p.name.startswith("."))
    assert files == ["manifest.json", "step-00000005.safetensors"]
    # A run folder's activations are the run's own.
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(ValueError, match="a run folder"):
        svcca.Recorder(tmp_path / "run", probe, LAYERS)
    with pytest.raises(ValueError, match="float8"):
        svcca.Recorder(tmp_path / "x", probe, LAYERS, dtype="float8")


def test_float16_files_and_a_probe_given_as_batches(tmp_path):
    torch.manual_seed(0)
    net = Net()
    batches = [torch.randn(7, 1, 16, 16) for _ in range(3)]
    with svcca.Recorder(tmp_path / "f16", batches, ["conv1", "out"], dtype="float16") as recorder:
        recorder.step(net, 0)
    manifest = json.loads((tmp_path / "f16" / "activations" / "manifest.json").read_text())
    assert [(e["layer"], e["shape"], e["dtype"]) for e in manifest["entries"]] == [
        ("conv1", [21, 4, 16, 16], "float16"),
        ("out", [21, 3], "float16"),
    ]


def test_a_failed_step_leaves_nothing_and_each_module_runs_once(tmp_path):
    """A forward pass that fails after the step's file was begun leaves no file and no
    temporary behind, and the next step records; a module run twice in one forward is
    refused (its datapoints would be written twice)."""
    import torch

    class Flaky(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 3)
            self.calls = 0
            self.fail_on = None

        def forward(self, x):
            self.calls += 1
            if self.calls == self.fail_on:
                raise RuntimeError("out of memory, say")
            return self.fc(x)

    torch.manual_seed(0)
    model, probe = Flaky(), torch.randn(10, 4)
    folder = tmp_path / "acts"
    with svcca.Recorder(folder, probe, ["fc"], batch_size=4) as rec:
        model.fail_on = 2  # the second of three batches
        with pytest.raises(RuntimeError, match="out of memory"):
            rec.step(model, 0)
        assert sorted(p.name for p in (folder / "activations").iterdir()) == []
        model.fail_on = None
        rec.step(model, 1)
    stored = sorted(p.name for p in (folder / "activations").iterdir())
    assert stored == ["manifest.json", "step-00000001.safetensors"]

    class Twice(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(self.fc(x))

    with svcca.Recorder(tmp_path / "twice", probe, ["fc"]) as rec:
        with pytest.raises(ValueError, match="ran more than once"):
            rec.step(Twice(), 0)
