"""The one place that imports optional extras, lazily, with an actionable error when they are missing."""
import importlib
from types import ModuleType

from edgeres.errors import EdgeresError, reraise_interrupt

# module -> the install command that provides it
_PROVIDERS = {
    "torch": "pip install 'edgeres[train]'",
    "torchvision": "pip install 'edgeres[train]'",
    "safetensors": "pip install 'edgeres[train]'",
    "tensorrt": "pip install 'edgeres[trt]' on an x86 GPU host, or use JetPack's python3-libnvinfer on a Jetson",
    "pycuda": "pip install 'edgeres[trt]' (needs a CUDA driver)",
    "matplotlib": "pip install matplotlib",
    "timm": "pip install 'edgeres[timm]'",
}


def require(module: str, purpose: str) -> ModuleType:
    """Import `module` or raise a one-line EdgeresError naming what needs it and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        reraise_interrupt(exc)
        root = module.split(".")[0]
        hint = _PROVIDERS.get(root, f"pip install {root}")
        raise EdgeresError(f"{purpose} needs {root}, which is not importable ({exc}): {hint}") from None


def torch(purpose: str = "this command") -> ModuleType:
    return require("torch", purpose)


def available(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError as exc:
        reraise_interrupt(exc)
        return False
    return True

