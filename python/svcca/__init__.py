"""svcca from Python: the similarity of two layers' activations (SVCCA, CCA, PWCCA, CKA),
computed by the same Rust code as ``svcca compare``, and a recorder of a PyTorch model's
activations at checkpoints for ``svcca analyze`` (the paper's Figure 4 for any model).

    import svcca
    result = svcca.compare(acts_a, acts_b)          # numpy arrays or torch tensors
    result.similarity, result.correlations

    recorder = svcca.Recorder("runs/mine", probe_images, ["conv1", "conv2", "fc1"])
    recorder.step(model, step)                       # inside your training loop
    recorder.close()                                 # then: svcca analyze runs/mine

See docs/python.md.
"""

from ._svcca import __version__
from .comparison import Comparison, compare
from .recorder import Recorder

__all__ = ["compare", "Comparison", "Recorder", "__version__"]
