"""A stand-in for the `tensorrt` module that refuses what TensorRT refuses, for 8.5, 10.x and 11.x.

Written from the real APIs (NVIDIA/TensorRT release/8.5, 10.3 and 11.1: python/src/infer/pyCore.cpp,
include/NvInfer.h; onnx/onnx-tensorrt docs/operators.md), independently of edgeres.build.trt_rules, so a rule
edgeres gets wrong fails here:
- versions are numbers; each release has its own enum members and values (8.5: EXPLICIT_BATCH=0; 10.3:
  EXPLICIT_BATCH=0, STRONGLY_TYPED=1; 11.1: STRONGLY_TYPED=0, deprecated and always on, no BuilderFlag.FP16/INT8);
- OnnxParser.parse_from_file returns False, with errors, for an 8.x network without EXPLICIT_BATCH, an opset
  above the release's, an op it has no importer for, Q/DQ on a type the release cannot (INT32 biases too),
  nonzero zero points, non-positive scales, per-channel activations;
- build_serialized_network returns None (error logged) for a dynamic network without an optimization profile;
- set_input_shape (outside the profile), set_tensor_address (unknown tensor, null address), execute_async_v3
  (unset shape/address) and set_timing_cache (another device's cache) return False; get_timing_cache() is None
  when no cache is set; create_timing_cache returns None for a corrupt blob; deserialize_cuda_engine returns None
  for a plan of another TensorRT version or device;
- an engine computes with onnxruntime on the graph it was built from, on tests.fake_pycuda's device memory,
  so accuracy measured through it is that graph's; each launch advances the stream's clock.
`trt.fail` (a set of method names) makes those methods fail on demand; `trt.log` records what was asked.
"""
import enum
import importlib.machinery
import json
import types

import numpy as np

from tests.fake_pycuda import Device

INT8, UINT8, INT32, FP8, INT4, FP4 = 3, 2, 6, 17, 22, 23
# An importer per op the fake parser knows (the real parsers know more; these cover every edgeres graph).
IMPORTERS = frozenset("""Abs Add AveragePool BatchNormalization Cast Clip Concat Constant Conv DequantizeLinear Div
Flatten Floor Gather Gemm GlobalAveragePool Greater Identity MatMul MaxPool Mul Neg Pad QuantizeLinear ReduceMean
Relu Reshape Resize Round Shape Sigmoid Sign Softmax Squeeze Sub Transpose Unsqueeze Where""".split())
RELEASES = {  # major -> (max opset, types Q/DQ may carry, network flags, builder flags, extra importers)
    8: (17, {INT8}, ("EXPLICIT_BATCH", "EXPLICIT_PRECISION"), ("FP16", "INT8"), set()),
    10: (20, {INT8, FP8, INT4}, ("EXPLICIT_BATCH", "STRONGLY_TYPED"), ("FP16", "INT8"), {"LayerNormalization"}),
    11: (25, {INT8, FP8, INT4, FP4}, ("STRONGLY_TYPED", "PREFER_JIT_PYTHON_PLUGINS", "PREFER_AOT_PYTHON_PLUGINS"),
         (), {"LayerNormalization", "Swish"}),
}
PLAN_MAGIC = b"FAKEPLAN\n"


def make(version: str = "10.3.0", device: Device | None = None, log: list | None = None) -> types.ModuleType:
    """A tensorrt module of `version` (8.x, 10.x or 11.x) building for `device`."""
    major = int(version.split(".")[0])
    max_opset, quantized, net_flags, builder_flags, extra = RELEASES[major]
    trt = types.ModuleType("tensorrt")
    trt.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)  # importlib.util.find_spec probes (torch) work
    trt.__version__, trt.fail, trt.log = version, set(), log if log is not None else []
    trt.device = device or Device()
    trt.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", net_flags, start=0)
    trt.BuilderFlag = enum.IntEnum("BuilderFlag", builder_flags or ("REFIT",), start=0)
    trt.MemoryPoolType = enum.IntEnum("MemoryPoolType", ["WORKSPACE"], start=0)
    trt.TensorIOMode = enum.IntEnum("TensorIOMode", ["NONE", "INPUT", "OUTPUT"], start=0)
    trt.DataType = enum.IntEnum("DataType", ["FLOAT", "HALF", "INT8", "INT32", "BOOL"], start=0)
    numpy_of = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "BOOL": np.bool_}
    trt.nptype = lambda dtype: numpy_of[dtype.name]
    rules = types.SimpleNamespace(major=major, max_opset=max_opset, quantized=quantized,
                                  importers=IMPORTERS | extra, version=version)

    class Logger:
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = 0, 1, 2, 3, 4

        def __init__(self, min_severity=2):
            self.min_severity = min_severity

    def error(message: str) -> None:
        trt.log.append(("error", message))

    trt.Logger, trt.error = Logger, error
    _network_api(trt, rules)
    _builder_api(trt, rules)
    _runtime_api(trt)
    return trt


def _network_api(trt, rules) -> None:
    class Network:
        def __init__(self, flags: int):
            self.flags, self.model, self.inputs, self.outputs = flags, None, [], []
            bit = {f.name: 1 << int(f) for f in trt.NetworkDefinitionCreationFlag}
            self.explicit_batch = rules.major >= 10 or bool(flags & bit["EXPLICIT_BATCH"])
            self.strongly_typed = rules.major >= 11 or bool(flags & bit.get("STRONGLY_TYPED", 0))

        @property
        def num_inputs(self) -> int:
            return len(self.inputs)

    class ParserError:
        def __init__(self, node: str, text: str):
            self.text, self.node_name = text, node

        def desc(self) -> str:
            return self.text

        def __str__(self) -> str:
            return f"In node {self.node_name}: {self.text}"

    class OnnxParser:
        def __init__(self, network: Network, logger):
            self.network, self.errors = network, []

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, index: int) -> ParserError:
            return self.errors[index]

        def parse_from_file(self, path: str) -> bool:
            import onnx
            model = onnx.load(path)
            trt.log.append(("parsed", path))
            self.errors = [ParserError(n, t) for n, t in refusals(model, self.network, rules)]
            if not self.errors:
                self.network.model = model
                self.network.inputs, self.network.outputs = io_tensors(model)
            return not self.errors

    trt.OnnxParser = OnnxParser
    trt.fake_network = Network


def refusals(model, network, rules) -> list[tuple[str, str]]:
    """(node, reason) for everything this release's ONNX parser refuses in `model`."""
    if not network.explicit_batch:
        return [("-1", "This version of the ONNX parser only supports TensorRT INetworkDefinitions with an explicit "
                       "batch dimension (create the network with EXPLICIT_BATCH)")]
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset > rules.max_opset:
        return [("-1", f"opset {opset} is newer than this parser's {rules.max_opset}")]
    import onnx
    try:
        model = onnx.shape_inference.infer_shapes(model)  # the types of intermediate tensors
    except Exception:  # noqa: BLE001 - the real parser does its own inference; fall back to the file's types
        pass
    found = []
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type not in rules.importers:
            found.append((node.name, f"No importer registered for op: {node.op_type}"))
        elif node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            found += [(node.name, why) for why in qdq_refusals(model, node, rules)]
    return found


def qdq_refusals(model, node, rules) -> list[str]:
    from onnx import numpy_helper
    consts = {t.name: t for t in model.graph.initializer}
    types_ = {t.name: t.data_type for t in model.graph.initializer}
    for info in [*model.graph.value_info, *model.graph.input, *model.graph.output]:
        types_.setdefault(info.name, info.type.tensor_type.elem_type)
    zp = consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    kind = types_.get(node.input[0]) if node.op_type == "DequantizeLinear" else (zp.data_type if zp else UINT8)
    why = []
    if kind not in rules.quantized:
        why.append(f"{node.op_type}: TensorRT {rules.version} cannot {'de' * (kind != UINT8)}quantize data type "
                   f"{kind}")
    if zp is not None and np.any(numpy_helper.to_array(zp) != 0):
        why.append("Assertion failed: zero point must be zero (only symmetric quantization is supported)")
    scale = consts.get(node.input[1])
    values = None if scale is None else numpy_helper.to_array(scale).astype(np.float64)
    if values is None or not np.all(np.isfinite(values) & (values > 0)):
        why.append("scale must be a build-time constant with positive coefficients")
    elif values.size > 1 and node.input[0] not in consts:
        why.append("per-channel quantization is supported only for weights (activations are per-tensor)")
    return why


def io_tensors(model) -> tuple[list, list]:
    """([(name, shape with -1 for dynamic dims, dtype name)] for inputs, outputs) of a parsed graph."""
    consts = {t.name for t in model.graph.initializer}

    def describe(info):
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in info.type.tensor_type.shape.dim]
        return info.name, tuple(dims), "HALF" if info.type.tensor_type.elem_type == 10 else "FLOAT"
    return [describe(i) for i in model.graph.input if i.name not in consts], [describe(o) for o in model.graph.output]


def _builder_api(trt, rules) -> None:
    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name: str, min, opt, max) -> None:  # noqa: A002 - the real keyword names
            shapes = [tuple(int(d) for d in s) for s in (min, opt, max)]
            if len({len(s) for s in shapes}) != 1 or not all(a <= b <= c for a, b, c in zip(*shapes)):
                raise RuntimeError("Shape provided for min is inconsistent with other shapes.")
            self.shapes[name] = shapes

    class TimingCache:
        def __init__(self, device: str, version: str, entries: int = 0):
            self.device, self.version, self.entries = device, version, entries

        def serialize(self) -> bytes:
            return b"FAKECACHE " + json.dumps(vars(self)).encode()

    class Config:
        def __init__(self):
            self.flags, self.profiles, self.cache, self.workspace = set(), [], None, None

        def set_memory_pool_limit(self, pool, size: int) -> None:
            self.workspace = size

        def set_flag(self, flag) -> None:
            self.flags.add(flag.name)
            trt.log.append(("flag", flag.name))

        def add_optimization_profile(self, profile: Profile) -> int:
            if not profile.shapes:
                return -1
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def create_timing_cache(self, blob: bytes):
            if not blob:
                return TimingCache(trt.device.name, trt.__version__)
            if not bytes(blob).startswith(b"FAKECACHE "):
                return None  # not a timing cache
            return TimingCache(**json.loads(bytes(blob)[len(b"FAKECACHE "):]))

        def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
            mismatch = (cache.device, cache.version) != (trt.device.name, trt.__version__)
            if "set_timing_cache" in trt.fail or (mismatch and not ignore_mismatch):
                trt.error(f"timing cache from {cache.device} / TensorRT {cache.version} does not match this device")
                return False
            self.cache = cache
            return True

        def get_timing_cache(self):
            return self.cache

    class Builder:
        def __init__(self, logger):
            self.logger = logger

        def create_network(self, flags: int = 0):
            trt.log.append(("network_flags", flags))
            return trt.fake_network(flags)

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network, config: Config):
            problem = build_problem(network, config)
            if problem or "build_serialized_network" in trt.fail:
                trt.error(problem or "build failed on demand")
                return None
            if config.cache is not None:
                config.cache.entries += 1
            profiles = [p.shapes for p in config.profiles]
            header = {"trt": trt.__version__, "device": trt.device.name, "inputs": network.inputs,
                      "outputs": network.outputs, "profiles": profiles, "strongly_typed": network.strongly_typed,
                      "flags": sorted(config.flags)}
            return PLAN_MAGIC + json.dumps(header).encode() + b"\n" + network.model.SerializeToString()

    trt.Builder = Builder


def build_problem(network, config) -> str | None:
    """Why the real builder returns None for this network/config (None when it builds)."""
    if network.model is None:
        return "Network must have at least one output (nothing was parsed)"
    dynamic = [(name, shape) for name, shape, _ in network.inputs if -1 in shape]
    if dynamic and not config.profiles:
        return "Network has dynamic or shape inputs, but no optimization profile has been defined."
    for name, shape in dynamic:
        for profile in config.profiles:
            if name not in profile.shapes:
                return f"Optimization profile is missing values for input {name}"
            for bound in profile.shapes[name]:
                if len(bound) != len(shape) or any(s != -1 and s != b for s, b in zip(shape, bound)):
                    return f"profile dimensions {bound} of {name} do not match the network's {shape}"
    return None


def _runtime_api(trt) -> None:
    class Engine:
        def __init__(self, header: dict, model_bytes: bytes):
            self.header, self.model_bytes, self.session = header, model_bytes, None
            self.io = [(n, tuple(s), d, trt.TensorIOMode.INPUT) for n, s, d in header["inputs"]]
            self.io += [(n, tuple(s), d, trt.TensorIOMode.OUTPUT) for n, s, d in header["outputs"]]

        num_io_tensors = property(lambda self: len(self.io))
        num_optimization_profiles = property(lambda self: max(1, len(self.header["profiles"])))

        def _tensor(self, name):
            return next(t for t in self.io if t[0] == name)

        def get_tensor_name(self, index: int) -> str:
            return self.io[index][0]

        def get_tensor_mode(self, name: str):
            return self._tensor(name)[3]

        def get_tensor_shape(self, name: str) -> tuple:
            return self._tensor(name)[1]

        def get_tensor_dtype(self, name: str):
            return trt.DataType[self._tensor(name)[2]]

        def get_tensor_profile_shape(self, name: str, profile_index: int) -> list:
            profiles = self.header["profiles"]
            return [tuple(s) for s in profiles[profile_index][name]] if profiles else []

        def create_execution_context(self):
            return Context(self)

    class Context:
        def __init__(self, engine: Engine):
            self.engine, self.shapes, self.addresses = engine, {}, {}

        def set_input_shape(self, name: str, shape) -> bool:
            shape, (_, static, _, mode) = tuple(int(d) for d in shape), self.engine._tensor(name)
            bounds = self.engine.get_tensor_profile_shape(name, 0) if -1 in static else [static, static, static]
            inside = len(shape) == len(static) and all(lo <= d <= hi for lo, d, hi in zip(bounds[0], shape, bounds[2]))
            if "set_input_shape" in trt.fail or mode != trt.TensorIOMode.INPUT or not inside:
                return False
            self.shapes[name] = shape
            return True

        def get_tensor_shape(self, name: str) -> tuple:
            _, shape, _, mode = self.engine._tensor(name)
            if mode == trt.TensorIOMode.INPUT:
                return self.shapes.get(name, shape)
            batch = next(iter(self.shapes.values()), (-1,))[0]
            return tuple(batch if d == -1 else d for d in shape)

        def set_tensor_address(self, name: str, memory: int) -> bool:
            if "set_tensor_address" in trt.fail or not memory or name not in [t[0] for t in self.engine.io]:
                return False
            self.addresses[name] = int(memory)
            return True

        def execute_async_v3(self, stream_handle: int) -> bool:
            inputs = [t for t in self.engine.io if t[3] == trt.TensorIOMode.INPUT]
            ready = all(-1 not in self.get_tensor_shape(t[0]) for t in inputs)
            if "execute_async_v3" in trt.fail or not ready or len(self.addresses) < len(self.engine.io):
                return False
            self._compute()
            batch = self.get_tensor_shape(inputs[0][0])[0]
            trt.device.advance(stream_handle, 0.05 + 0.01 * batch)  # deterministic "kernel time", ms
            return True

        def _compute(self) -> None:
            if self.engine.session is None:
                from edgeres.runtimes.ort import ort_session
                # exact INT8 kernels: TensorRT accumulates in int32, it does not saturate as ORT's fast AVX2 ones
                self.engine.session = ort_session(self.engine.model_bytes, 1, exact_int8=True)
            dtype = {"FLOAT": np.float32, "HALF": np.float16}
            feed = {n: trt.device.read(self.addresses[n], self.get_tensor_shape(n), dtype[d])
                    for n, _, d, mode in self.engine.io if mode == trt.TensorIOMode.INPUT}
            names = [n for n, _, _, mode in self.engine.io if mode == trt.TensorIOMode.OUTPUT]
            for name, value in zip(names, self.engine.session.run(names, feed)):
                trt.device.write(self.addresses[name], value)

    class Runtime:
        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, serialized_engine: bytes):
            data = bytes(serialized_engine)
            if not data.startswith(PLAN_MAGIC):
                trt.error("The engine plan file is not a TensorRT engine")
                return None
            header_line, _, model_bytes = data[len(PLAN_MAGIC):].partition(b"\n")
            header = json.loads(header_line)
            if (header["trt"], header["device"]) != (trt.__version__, trt.device.name):
                trt.error("The engine plan file is not compatible with this version of TensorRT or this device")
                return None
            return Engine(header, model_bytes)

    trt.Runtime = Runtime


def install(monkeypatch, version: str = "10.3.0", device: Device | None = None, log: list | None = None):
    """Put a fake tensorrt of `version` into sys.modules (undone by monkeypatch); returns the module."""
    import sys
    trt = make(version, device, log)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return trt
