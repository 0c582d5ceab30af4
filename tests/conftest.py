"""Shared fixtures: tiny models and tiny real data, made in the test session."""
import sys

import pytest

torch = pytest.importorskip("torch")

from edgeres.models import ArchSpec, build_rsnet  # noqa: E402

TINY_RES = (28, 20, 12)
# bench options for the tests' real but short measurements (no speed targets)
FAST = ["--min-time", "0.15", "--min-runs", "10", "--warmup", "3"]
# Tiny models on a shared 2-core box: extra intra-op threads only add contention (2 s vs 35 s seen under load).
torch.set_num_threads(1)


@pytest.fixture
def tiny_spec() -> ArchSpec:
    """MobileNetV2 x0.25 with a stride-1 stem: small enough for CPU tests at 12-28 px."""
    return ArchSpec("mobilenet_v2", num_classes=10, in_channels=1, width_mult=0.25, small_input=True)


@pytest.fixture
def tiny_rsnet(tiny_spec):
    torch.manual_seed(0)
    model = build_rsnet(tiny_spec, TINY_RES)
    randomize_bn(model)
    return model.eval()


def randomize_bn(model) -> None:
    """Give every BN non-trivial, different statistics so tests can tell BNs apart."""
    gen = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.weight.data = 0.5 + torch.rand(n, generator=gen)
            module.bias.data = torch.randn(n, generator=gen) * 0.1
            module.running_mean = torch.randn(n, generator=gen) * 0.1
            module.running_var = 0.5 + torch.rand(n, generator=gen)


@pytest.fixture
def block_modules(monkeypatch):
    """block_modules('torch', 'tensorrt'): make those imports fail as if not installed."""
    def block(*names):
        for name in list(sys.modules):
            if name.split(".")[0] in names:
                monkeypatch.delitem(sys.modules, name)
        for name in names:
            monkeypatch.setitem(sys.modules, name, None)
    return block


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Two export dirs of the same tiny CNN, one per test module: depth 2, and depth 12 (about 5x the MACs: a
    robust slowdown)."""
    from edgeres.runtimes.tiny import tiny_export
    base = tmp_path_factory.mktemp("tiny")
    return tiny_export(base / "fast", depth=2), tiny_export(base / "slow", depth=12)
