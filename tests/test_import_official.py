"""Official RS-Nets checkpoints (yikaiw/RS-Nets, PyTorch): their key layout, built here from the layout their code
defines, imports without data; each bn_i serves its resolution exactly as a plain torchvision net with that BN."""
import json

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from click.testing import CliRunner  # noqa: E402
from torch import nn  # noqa: E402

from edgeres.cli import cli  # noqa: E402
from edgeres.errors import EdgeresError  # noqa: E402
from edgeres.importer import import_model  # noqa: E402
from edgeres.models import at_resolution  # noqa: E402
from edgeres.models.checkpoint import load_checkpoint  # noqa: E402
from edgeres.models.official import switchable_state  # noqa: E402

SIZES = (224, 192, 160, 128, 96)  # the official script's default --sizes: bn_i was trained at SIZES[i]
CLASSES = 10  # the released nets have 1000; fewer keeps the test small, the layout is the same


def official_layout(plain: nn.Module, n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """`plain`'s weights as the official code stores them: DataParallel's `module.`, ModuleParallel's
    `.module.` around every conv/linear, BatchNorm2dParallel's `bn_0..bn_{n-1}` (here with distinct
    statistics and affine parameters each), and the ensemble scores `alpha`."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, module in plain.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            for tensor, value in module.state_dict().items():
                state[f"module.{name}.module.{tensor}"] = value.clone()
        elif isinstance(module, nn.BatchNorm2d):
            c = module.num_features
            for i in range(n):
                state.update({f"module.{name}.bn_{i}.weight": 0.5 + torch.rand(c, generator=gen),
                              f"module.{name}.bn_{i}.bias": 0.1 * torch.randn(c, generator=gen),
                              f"module.{name}.bn_{i}.running_mean": 0.1 * torch.randn(c, generator=gen),
                              f"module.{name}.bn_{i}.running_var": 0.5 + torch.rand(c, generator=gen),
                              f"module.{name}.bn_{i}.num_batches_tracked": torch.tensor(1000 + i)})
    state["module.alpha"] = torch.tensor([0.9, 0.5, 0.1, -0.2, -0.6])[:n]
    return state


def plain_with_bn(plain: nn.Module, official: dict, i: int) -> nn.Module:
    """A plain torchvision net carrying the official weights with private BN i, mapped by hand here."""
    mine = {}
    for key, value in official.items():
        name = key.removeprefix("module.").replace(".module.", ".")
        if f".bn_{i}." in name:
            mine[name.replace(f".bn_{i}.", ".")] = value
        elif ".bn_" not in name and name != "alpha":
            mine[name] = value
    plain.load_state_dict(mine)
    return plain.eval()


@pytest.fixture(scope="module")
def official_file(tmp_path_factory):
    torch.manual_seed(0)
    state = official_layout(torchvision.models.resnet18(num_classes=CLASSES), len(SIZES))
    path = tmp_path_factory.mktemp("official") / "rsnet18.pth.tar"
    optimizer = {"state": {}, "param_groups": [{"lr": 0.0, "momentum": 0.9, "params": [0, 1]}]}
    torch.save({"epoch": 120, "arch": "parallel_resnet18", "state_dict": state, "best_acc0": 73.1,
                "best_acc": 69.8, "optimizer": optimizer}, path)
    return path, state


def test_official_resnet18_imports_without_data_and_each_bn_i_serves_its_resolution(official_file, tmp_path):
    path, state = official_file
    out = import_model("resnet18", path, ",".join(map(str, SIZES)), tmp_path / "ckpt")
    model, info, _ = load_checkpoint(out)
    gen = torch.Generator().manual_seed(3)
    for i, res in enumerate(SIZES):
        x = torch.randn(1, 3, res, res, generator=gen)
        reference = plain_with_bn(torchvision.models.resnet18(num_classes=CLASSES), state, i)
        with torch.no_grad(), at_resolution(model, res):
            diff = (model(x) - reference(x)).abs().max().item()
        assert diff <= 1e-5, (res, diff)
    written = json.loads((out / "checkpoint.json").read_text())
    weights = torch.softmax(state["module.alpha"].double(), 0).tolist()  # SIZES are high -> low already
    assert written["ensemble_weights"] == pytest.approx(weights, abs=1e-6)
    assert written["training"]["bn_mapping"] == {f"bn_{i}": r for i, r in enumerate(SIZES)}
    assert written["training"]["official"]["alpha"] == pytest.approx(state["module.alpha"].tolist())
    assert written["training"]["official"]["epoch"] == 120 and written["training"]["recalibrated"] is False
    assert (info.mean, info.std, info.eval_crop_ratio, info.data) == ((0.0,) * 3, (1.0,) * 3, 0.875, "")
    assert (info.arch.name, info.arch.num_classes, info.resolutions) == ("resnet18", CLASSES, SIZES)


def test_bn_i_follows_the_order_the_sizes_were_typed(official_file):
    _, state = official_file
    mapped, _ = switchable_state(state, "resnet18", tuple(reversed(SIZES)))  # trained with --sizes 96 ... 224
    assert torch.equal(mapped["bn1.bn.96.running_mean"], state["module.bn1.bn_0.running_mean"])
    assert torch.equal(mapped["layer2.0.downsample.1.bn.224.weight"], state["module.layer2.0.downsample.1.bn_4.weight"])
    assert torch.equal(mapped["fc.weight"], state["module.fc.module.weight"]) and "alpha" not in mapped


def test_official_layout_errors_are_one_line(official_file, tmp_path):
    path, _ = official_file
    for arch, res, message in (("resnet18", "224,160,96", "5 private BNs per layer .* but --res lists 3"),
                               ("resnet50", "224,192,160,128,96", "trained as 'parallel_resnet18'"),
                               ("mobilenet_v3_small", "224,192,160,128,96", "maps for resnet18")):
        with pytest.raises(EdgeresError, match=message) as err:
            import_model(arch, path, res, tmp_path / "x")
        assert "\n" not in str(err.value) and not (tmp_path / "x").exists()


def test_cli_states_the_mapping(official_file, tmp_path):
    path, _ = official_file
    result = CliRunner().invoke(cli, ["import", "--arch", "resnet18", "--weights", str(path), "--res",
                                      "224,192,160,128,96", "--out", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    assert "bn_0 -> 224 px" in result.stdout and "bn_4 -> 96 px" in result.stdout
    assert "--data DIR" in result.stderr  # export/eval will need images: the hint says so


# MobileNetV2 as the official code builds it (tonylins/pytorch-mobilenet-v2): the paper's table, width 1.0
MBV2_TABLE = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def mbv2_blocks():
    """(block index k, in channels, out channels, stride, expansion t) for features.1 .. features.17."""
    blocks, inp, k = [], 32, 1
    for t, c, n, s in MBV2_TABLE:
        for j in range(n):
            blocks.append((k, inp, c, s if j == 0 else 1, t))
            inp, k = c, k + 1
    return blocks


def mbv2_official_state(n: int, classes: int) -> dict[str, torch.Tensor]:
    """Random weights under the official MobileNetV2 names: conv_3x3_bn stem, InvertedResidual.conv
    Sequential (conv/bn/relu6 at 0..7), conv_1x1_bn head `conv`, `classifier` Linear; all wrapped as above."""
    gen = torch.Generator().manual_seed(5)
    layers = {"features.0.0": (32, 3, 3), "features.0.1": 32}
    for k, inp, oup, _, t in mbv2_blocks():
        hidden, p = inp * t, f"features.{k}.conv"
        if t == 1:
            layers.update({f"{p}.0": (hidden, 1, 3), f"{p}.1": hidden, f"{p}.3": (oup, hidden, 1), f"{p}.4": oup})
        else:
            layers.update({f"{p}.0": (hidden, inp, 1), f"{p}.1": hidden, f"{p}.3": (hidden, 1, 3), f"{p}.4": hidden,
                           f"{p}.6": (oup, hidden, 1), f"{p}.7": oup})
    layers.update({"conv.0": (1280, 320, 1), "conv.1": 1280})
    plain = nn.Module()
    for name, shape in [*layers.items(), ("classifier", None)]:
        if shape is None:
            module = nn.Linear(1280, classes)
        elif isinstance(shape, int):
            module = nn.BatchNorm2d(shape)
        else:
            module = nn.Conv2d(shape[1], shape[0], shape[2], bias=False)
            nn.init.kaiming_normal_(module.weight, generator=gen)
        parent, (*path, leaf) = plain, name.split(".")
        for part in path:  # nested containers, so that named_modules() gives the dotted official names
            if not hasattr(parent, part):
                parent.add_module(part, nn.Module())
            parent = getattr(parent, part)
        parent.add_module(leaf, module)
    return official_layout(plain, n, seed=6)


def mbv2_reference(state: dict, x: torch.Tensor, i: int) -> torch.Tensor:
    """The official MobileNetV2 forward written out with torch.nn.functional, private BN i."""
    import torch.nn.functional as F

    def conv(name, x, stride=1, groups=1):
        w = state[f"module.{name}.module.weight"]
        return F.conv2d(x, w, None, stride, w.shape[-1] // 2, 1, groups)

    def bn(name, x):
        g = {t: state[f"module.{name}.bn_{i}.{t}"] for t in ("weight", "bias", "running_mean", "running_var")}
        return F.batch_norm(x, g["running_mean"], g["running_var"], g["weight"], g["bias"], False, 0.0, 1e-5)

    x = F.relu6(bn("features.0.1", conv("features.0.0", x, 2)))
    for k, inp, oup, stride, t in mbv2_blocks():
        p, y = f"features.{k}.conv", x
        if t != 1:
            y = F.relu6(bn(f"{p}.1", conv(f"{p}.0", y)))
        dw, dw_bn, pw, pw_bn = ((f"{p}.0", f"{p}.1", f"{p}.3", f"{p}.4") if t == 1 else
                                (f"{p}.3", f"{p}.4", f"{p}.6", f"{p}.7"))
        y = F.relu6(bn(dw_bn, conv(dw, y, stride, groups=y.shape[1])))
        y = bn(pw_bn, conv(pw, y))
        x = x + y if stride == 1 and inp == oup else y
    x = F.relu6(bn("conv.1", conv("conv.0", x))).mean((2, 3))
    return F.linear(x, state["module.classifier.module.weight"], state["module.classifier.module.bias"])


def test_official_mobilenetv2_tonylins_layout_runs_as_their_forward(tmp_path):
    sizes = (64, 48, 32)
    state = mbv2_official_state(len(sizes), CLASSES)
    torch.save({"arch": "parallel_mobilenetv2", "state_dict": state}, tmp_path / "mbv2.pth.tar")
    out = import_model("mobilenet_v2", tmp_path / "mbv2.pth.tar", sizes, tmp_path / "ckpt")
    model, _, _ = load_checkpoint(out)
    for i, res in enumerate(sizes):
        x = torch.randn(2, 3, res, res, generator=torch.Generator().manual_seed(res))
        with torch.no_grad(), at_resolution(model, res):
            ours, theirs = model(x), mbv2_reference(state, x, i)
        assert (ours - theirs).abs().max() <= 1e-5 + 1e-5 * theirs.abs().max(), res
