"""One runner per backend (ONNX Runtime, TensorRT, PyTorch eager) and the one timing primitive.

Every stage that runs a model goes through these. Heavy imports (onnxruntime, torch, tensorrt) happen inside
the runners, so importing this package is cheap and torch-free.
"""
from edgeres.errors import EdgeresError
from edgeres.runtimes.base import Runner, SkipCell, random_input


def make_runner(backend: str, threads: int | None, provider: str = "CPUExecutionProvider") -> Runner:
    """The runner for an artifact's backend ("ort", "torch", "trt")."""
    if backend == "ort":
        from edgeres.runtimes.ort import OrtRunner
        return OrtRunner(threads, provider)
    if backend == "torch":
        from edgeres.runtimes.torch_eager import TorchRunner
        return TorchRunner(threads)
    if backend == "trt":
        from edgeres.runtimes.trt import TrtRunner
        return TrtRunner()
    raise EdgeresError(f"unknown bench backend {backend!r}: valid are ort, torch, trt")


__all__ = ["Runner", "SkipCell", "make_runner", "random_input"]
