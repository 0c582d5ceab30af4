"""specialize(): one resolution of an RS-Net with every BN folded into its conv equals the RS-Net there."""
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from edgeres.errors import EdgeresError  # noqa: E402
from edgeres.models import (  # noqa: E402
    ArchSpec,
    SwitchableBatchNorm2d,
    at_resolution,
    build_rsnet,
    convert_to_switchable,
    interpolate_bn_tensors,
)
from edgeres.models.specialize import conv_bn_pairs, fp16_range, plain_bn, specialize  # noqa: E402
from edgeres.models.switchable_bn import choose_bn  # noqa: E402

from .conftest import TINY_RES, randomize_bn  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 shared cores: OpenMP spinning with 2 threads is far slower here
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_resnet():
    torch.manual_seed(0)
    model = build_rsnet(ArchSpec("resnet18", 10, in_channels=1, small_input=True), TINY_RES)
    randomize_bn(model)
    return model.eval()


def _outputs(model, special, res):
    x = torch.randn(3, model.conv1.in_channels if hasattr(model, "conv1") else 1, res, res,
                    generator=torch.Generator().manual_seed(res))
    with torch.no_grad(), at_resolution(model, res, allow_nearest=True):
        return model(x), special(x)


@pytest.mark.parametrize("res", [28, 20, 12, 24, 16])  # trained, then interpolated
def test_folded_mobilenet_equals_rsnet_at_res(tiny_rsnet, res):
    special = specialize(tiny_rsnet, res)
    ref, got = _outputs(tiny_rsnet, special, res)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
    assert not [m for m in special.modules() if isinstance(m, (nn.BatchNorm2d, SwitchableBatchNorm2d))]


@pytest.mark.parametrize("res", [28, 16])
def test_folded_resnet_equals_rsnet_at_res(tiny_resnet, res):
    special = specialize(tiny_resnet, res)
    ref, got = _outputs(tiny_resnet, special, res)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_resolutions_differ_and_original_is_untouched(tiny_rsnet):
    before = {k: v.clone() for k, v in tiny_rsnet.state_dict().items()}
    x = torch.randn(1, 1, 20, 20)
    with torch.no_grad():
        a, b = specialize(tiny_rsnet, 28)(x), specialize(tiny_rsnet, 20)(x)
    assert (a - b).abs().max() > 1e-3  # private BNs really differ, so the test above can tell them apart
    after = tiny_rsnet.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())
    assert any(isinstance(m, SwitchableBatchNorm2d) for m in tiny_rsnet.modules())


def test_outside_range_needs_nearest(tiny_rsnet):
    with pytest.raises(EdgeresError, match="outside the trained range"):
        specialize(tiny_rsnet, 32)
    special = specialize(tiny_rsnet, 32, allow_nearest=True)
    ref, got = _outputs(tiny_rsnet, special, 32)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)


def test_pairs_follow_data_flow_in_resnet(tiny_resnet):
    pairs = dict((bn, conv) for conv, bn in conv_bn_pairs(tiny_resnet, 12))
    assert pairs["bn1"] == "conv1" and pairs["layer1.0.bn2"] == "layer1.0.conv2"
    assert pairs["layer2.0.downsample.1"] == "layer2.0.downsample.0"
    assert len(pairs) == sum(isinstance(m, SwitchableBatchNorm2d) for m in tiny_resnet.modules())


def test_interpolated_plain_bn_is_the_weighted_average(tiny_rsnet):
    layer = next(m for m in tiny_rsnet.modules() if isinstance(m, SwitchableBatchNorm2d))
    bn = plain_bn(layer, choose_bn(22, TINY_RES))  # 22 = 20 + 0.25 * (28 - 20)
    hi, lo = layer.private(28), layer.private(20)
    torch.testing.assert_close(bn.running_var, 0.25 * hi.running_var + 0.75 * lo.running_var)
    torch.testing.assert_close(bn.weight, interpolate_bn_tensors(hi, lo, 0.25)["weight"])


def test_bn_not_after_a_conv_is_refused():
    net = convert_to_switchable(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.BatchNorm2d(2)), (16, 8)).eval()
    with pytest.raises(EdgeresError, match=r"BatchNorm 2 does not take a Conv2d output.*cannot be folded"):
        specialize(net, 16)


class _Frozen(nn.Conv2d):
    """Stands in for an LQ-Net conv: freeze_for_export() bakes the quantized weight into .weight."""

    frozen = False

    def freeze_for_export(self):
        with torch.no_grad():
            self.weight.copy_(torch.sign(self.weight))
        self.frozen = True


def test_freeze_for_export_runs_on_the_copy_before_folding():
    net = convert_to_switchable(nn.Sequential(_Frozen(1, 2, 3, bias=False), nn.BatchNorm2d(2)), (16, 8))
    randomize_bn(net)
    special = specialize(net.eval(), 16)
    assert not net[0].frozen and special[0].frozen
    bn = net[1].private(16)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # folded w = sign(w) * scale per output channel
    torch.testing.assert_close(special[0].weight, torch.sign(net[0].weight) * scale.view(-1, 1, 1, 1))


def test_fp16_range_counts_overflow_and_subnormals():
    lin = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[7e4, 1e-6], [0.0, 1.0]]))
    assert fp16_range(lin) == {"weights": 4, "overflow": 1, "subnormal": 1}
