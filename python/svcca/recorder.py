"""``svcca.Recorder``: a PyTorch model's activations on a fixed probe batch, recorded at
the steps you choose into an activation folder (docs/analysis.md, "Any network"), which
``svcca analyze FOLDER`` turns into the learning-dynamics tables, chance level and
heatmaps of a built-in run."""

from . import _svcca


class Recorder:
    """Records the outputs of named modules of a model on ``probe`` at each ``step()``.

    folder: the activation folder (made if missing; not a run folder). It is locked
        while the recorder is open: ``close()`` it (or use ``with``) before
        ``svcca analyze``.
    probe: the inputs, a tensor whose first axis is the datapoints (the same every
        step: the analysis compares each layer on the same datapoints), or a sequence of
        such tensors, batches to feed in turn.
    layers: names of modules, as ``model.named_modules()`` gives them (``"features.0"``,
        ``"fc1"``), bottom-up: the order of the heatmaps' axes. Each must output one
        tensor, N x C x H x W (conv) or N x D (dense), per input batch.
    batch_size: datapoints per forward pass (a tensor probe is split into such batches).
    dtype: "float32" (default) or "float16", the stored files' precision.

    ``step(model, step)`` runs the model in eval mode without gradients (and restores
    its mode), so it can sit inside a training loop. Steps must increase; the last one
    recorded is taken as the final network. Each step is written to its own file
    atomically; a step already in the folder, other layers or shapes than at the first
    step are refused with ValueError naming the folder.
    """

    def __init__(self, folder, probe, layers, *, batch_size=256, dtype="float32"):
        self.layers = list(layers)
        if not self.layers:
            raise ValueError("layers: name at least one module to record")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: at least 1")
        self.probe = probe
        self.batch_size = batch_size
        self.folder = str(folder)
        self._writer = _svcca.ActivationWriter(self.folder, dtype)

    def _batches(self):
        if hasattr(self.probe, "split"):
            return self.probe.split(self.batch_size)
        return list(self.probe)

    def step(self, model, step):
        """Records every layer of ``model`` on the probe as step ``step``."""
        import torch

        modules = dict(model.named_modules())
        missing = [name for name in self.layers if name not in modules]
        if missing:
            named = ", ".join(repr(n) for n in modules if n) or "none"
            raise ValueError(f"no module {', '.join(map(repr, missing))} in this model; its modules are {named}")
        batches = self._batches()
        rows = sum(len(b) for b in batches)
        params = next(model.parameters(), None)
        device = params.device if params is not None else None
        # Each forward batch's outputs are written to the step's file as they come (the
        # file is begun once the first batch has shown every layer's shape), so only one
        # batch's activations are ever held, whatever the probe's size.
        outputs = {}

        def hook_for(name):
            def hook(module, inputs, output):
                if not isinstance(output, torch.Tensor):
                    raise ValueError(f"module '{name}' returns {type(output).__name__}, not one tensor: record a module that does")
                if name in outputs:
                    raise ValueError(f"module '{name}' ran more than once in one forward pass: record a module that runs once")
                outputs[name] = output.detach()
            return hook

        handles = [modules[name].register_forward_hook(hook_for(name)) for name in self.layers]
        training = model.training
        shapes = None
        try:
            model.eval()
            with torch.no_grad():
                for batch in batches:
                    outputs.clear()
                    model(batch.to(device) if device is not None else batch)
                    silent = [name for name in self.layers if name not in outputs]
                    if silent:
                        raise ValueError(f"module(s) {', '.join(map(repr, silent))} did not run in the model's forward pass")
                    if shapes is None:
                        shapes = {name: tuple(outputs[name].shape[1:]) for name in self.layers}
                        self._writer.begin(int(step), [(name, [rows, *shapes[name]]) for name in self.layers])
                    for i, name in enumerate(self.layers):
                        out = outputs[name]
                        if tuple(out.shape[1:]) != shapes[name]:
                            raise ValueError(f"module '{name}' gives {tuple(out.shape)} for one batch, "
                                             f"{(len(batches[0]),) + shapes[name]} for the first")
                        self._writer.rows(i, out.to("cpu", torch.float32).contiguous().numpy())
            self._writer.finish()
        except BaseException:
            # Nothing of this step stays: its unfinished file is removed.
            self._writer.abort()
            raise
        finally:
            for h in handles:
                h.remove()
            model.train(training)

    def close(self):
        """Releases the folder for ``svcca analyze``; later steps are refused."""
        self._writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
