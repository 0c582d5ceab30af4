"""PyTorch eager runner: the RS-Net from its checkpoint, switched per resolution (what users run without export)."""
import numpy as np

from edgeres.manifests.artifacts import Artifact
from edgeres.runtimes.base import random_input


class TorchRunner:
    """PyTorch eager: the RS-Net from the checkpoint, switched to the row's resolution before every run
    (what users do without export). One model is shared by all resolutions of a checkpoint."""

    provider = "torch-cpu"
    _models: dict = {}

    def __init__(self, threads: int | None = None):
        self.threads = threads

    def prepare(self, artifact: Artifact, batch: int) -> np.ndarray:
        from edgeres import _optional
        torch = _optional.torch("the PyTorch eager bench backend")
        from edgeres.models import choose_bn, switchable_layers
        from edgeres.models.checkpoint import load_checkpoint
        if self.threads:
            torch.set_num_threads(self.threads)
        if artifact.checkpoint not in self._models:
            self._models[artifact.checkpoint] = load_checkpoint(artifact.checkpoint)[:2]
        self.model, info = self._models[artifact.checkpoint]
        self.torch, self.layers = torch, switchable_layers(self.model)
        self.choice = choose_bn(artifact.resolution, self.layers[0].resolutions, allow_nearest=True)
        shape = (batch, info.arch.in_channels, artifact.resolution, artifact.resolution)
        return random_input(shape)

    def run(self, inputs: np.ndarray) -> None:
        with self.torch.inference_mode():
            for layer in self.layers:  # the switch is part of the cost: rows of one model interleave
                layer.choice = self.choice
            self.model(self.torch.from_numpy(inputs))

    def close(self) -> None:
        self.model = None
