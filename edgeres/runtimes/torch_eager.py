"""PyTorch eager: the RS-Net itself, switched to one resolution (what users run without export).

Torch is imported only when a runner is made, so importing this module is torch-free.
"""
import numpy as np

from edgeres.runtimes.base import random_input


class TorchRunner:
    """An RS-Net at one resolution; several runners share one model (see runtimes.base.Runner).

    The BN switch happens on every call: rows of one model interleave in the bench, and the switch is part of
    what a user pays at run time.
    """

    provider = "torch-cpu"
    static_batch = None
    _models: dict = {}  # checkpoint dir -> (model, CheckpointInfo): one load per bench plan

    def __init__(self, model, resolution: int, in_channels: int = 3, allow_nearest: bool = False,
                 device: str = "cpu"):
        from edgeres import _optional
        from edgeres.models import choose_bn, switchable_layers
        self.torch = _optional.torch("the PyTorch eager backend")
        self.model, self.resolution, self.in_channels, self.device = model, resolution, in_channels, device
        self.layers = switchable_layers(model)
        self.choice = choose_bn(resolution, self.layers[0].resolutions, allow_nearest=allow_nearest)

    @classmethod
    def from_checkpoint(cls, checkpoint: str, resolution: int, threads: int | None = None,
                        device: str = "cpu") -> "TorchRunner":
        from edgeres import _optional
        torch = _optional.torch("the PyTorch eager backend")
        from edgeres.models.checkpoint import load_checkpoint
        if threads:
            torch.set_num_threads(threads)
        if (checkpoint, device) not in cls._models:
            cls._models[checkpoint, device] = load_checkpoint(checkpoint, device=device)[:2]
        model, info = cls._models[checkpoint, device]
        runner = cls(model, resolution, info.arch.in_channels, allow_nearest=True, device=device)
        runner.provider = f"torch-{device}"
        return runner

    def _forward(self, x: np.ndarray):
        previous = [layer.choice for layer in self.layers]  # the model may be shared: leave it as found
        try:
            for layer in self.layers:
                layer.choice = self.choice
            with self.torch.inference_mode():
                return self.model(self.torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device))
        finally:
            for layer, choice in zip(self.layers, previous):
                layer.choice = choice

    def infer(self, x: np.ndarray) -> np.ndarray:
        return self._forward(x).float().cpu().numpy()

    def example_input(self, batch: int) -> np.ndarray:
        return random_input((batch, self.in_channels, self.resolution, self.resolution))

    def run(self, inputs: np.ndarray) -> None:
        """One timed call: host array in, result ready (on CUDA the host-to-device copy is part of it, and the
        call waits for the kernels, which would otherwise return before the GPU has finished)."""
        self._forward(inputs)
        if self.device != "cpu":
            self.torch.cuda.synchronize(self.device)

    def close(self) -> None:
        self.model = None
