"""One runner per backend (ONNX Runtime, TensorRT, PyTorch eager) and the one timing primitive.

Every stage that runs a model goes through these: `open_runner(artifact)` gives a `Runner` (runtimes.base)
whatever the backend. Heavy imports (onnxruntime, torch, tensorrt) happen inside the runners, so importing
this package is cheap and torch-free.
"""
from edgeres.errors import EdgeresError
from edgeres.runtimes.base import Runner, SkipCell, random_input

BACKENDS = ("ort", "trt", "torch")


def open_runner(artifact, threads: int | None = None, provider: str = "CPUExecutionProvider",
                spinning: bool = False, exact_int8: bool = False) -> Runner:
    """The runner for a manifests.artifacts.Artifact, by its backend ("ort", "trt", "torch").

    spinning=False by default: runners of several artifacts are used in turn (bench interleaving, cascade
    stages), and ORT's spinning idle threads would fight each other (see runtimes.ort.ort_session).
    exact_int8: ORT's exact INT8 kernels on CPUs without VNNI (accuracy measurements; runtimes.ort.ort_session).
    """
    if artifact.backend == "ort":
        from edgeres.runtimes.ort import OrtRunner
        return OrtRunner(artifact.file, threads, provider, spinning=spinning, exact_int8=exact_int8)
    if artifact.backend == "torch":
        from edgeres.runtimes.torch_eager import TorchRunner
        device = "cuda" if provider == "CUDAExecutionProvider" else "cpu"  # the bench's --device cuda
        return TorchRunner.from_checkpoint(artifact.checkpoint, artifact.resolution, threads, device)
    if artifact.backend == "trt":
        from edgeres.runtimes.trt import TrtRunner
        return TrtRunner(artifact.file)
    raise EdgeresError(f"unknown backend {artifact.backend!r}: valid are {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "Runner", "SkipCell", "open_runner", "random_input"]
