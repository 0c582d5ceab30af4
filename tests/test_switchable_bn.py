import copy

import pytest
import torch
from torch import nn

from edgeres.errors import EdgeresError
from edgeres.models import (
    SwitchableBatchNorm2d,
    at_resolution,
    build_plain,
    choose_bn,
    convert_to_switchable,
    set_resolution,
    switchable_layers,
    trained_resolutions,
)

from .conftest import TINY_RES, randomize_bn


def test_choose_bn_exact_interpolated_and_out_of_range():
    assert choose_bn(20, (28, 20, 12)).exact
    mid = choose_bn(24, (12, 28, 20))  # any input order
    assert (mid.high, mid.low, mid.w_high) == (28, 20, 0.5)
    assert choose_bn(14, (28, 20, 12)).w_high == pytest.approx(0.25)
    with pytest.raises(EdgeresError, match="outside the trained range 12..28"):
        choose_bn(32, (28, 20, 12))
    near = choose_bn(8, (28, 20, 12), allow_nearest=True)
    assert (near.high, near.low) == (12, 12)


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v2"])
def test_converted_model_equals_original_at_every_resolution(tiny_spec, arch):
    from dataclasses import replace
    spec = replace(tiny_spec, name=arch, width_mult=1.0 if arch == "resnet18" else 0.25)
    torch.manual_seed(0)
    original = build_plain(spec)
    randomize_bn(original)
    original.eval()
    converted = convert_to_switchable(copy.deepcopy(original), TINY_RES).eval()
    assert not any(type(m) is nn.BatchNorm2d for m in converted.modules() if not _inside_switchable(converted, m))
    for res in TINY_RES:
        x = torch.randn(2, 1, res, res)
        with torch.no_grad(), at_resolution(converted, res):
            assert torch.equal(converted(x), original(x))


def test_convert_copies_statistics_into_every_private_bn():
    bn = nn.BatchNorm2d(4)
    bn.running_mean.fill_(0.3)
    bn.weight.data.fill_(2.0)
    model = convert_to_switchable(nn.Sequential(nn.Conv2d(1, 4, 3), bn), (16, 8))
    layer = model[1]
    assert isinstance(layer, SwitchableBatchNorm2d) and layer.resolutions == (16, 8)
    for res in (16, 8):
        assert torch.equal(layer.private(res).running_mean, torch.full((4,), 0.3))
        assert torch.equal(layer.private(res).weight, torch.full((4,), 2.0))


def test_private_statistics_stay_private(tiny_rsnet):
    before = {k: v.clone() for k, v in tiny_rsnet.state_dict().items()}
    tiny_rsnet.train()
    with at_resolution(tiny_rsnet, 20):
        tiny_rsnet(torch.randn(4, 1, 20, 20))
    after = tiny_rsnet.state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed, "training at 20 should update the 20 px running statistics"
    assert all(".bn.20." in k for k in changed), sorted(changed)[:5]


def test_interpolated_bn_equals_hand_computed_average():
    layer = SwitchableBatchNorm2d(3, resolutions=(28, 20))
    hi, lo = layer.private(28), layer.private(20)
    hi.weight.data, lo.weight.data = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([3.0, 2.0, 1.0])
    hi.bias.data, lo.bias.data = torch.tensor([0.0, 1.0, 0.0]), torch.tensor([1.0, 1.0, 1.0])
    hi.running_mean, lo.running_mean = torch.tensor([0.0, 0.0, 2.0]), torch.tensor([2.0, 0.0, 0.0])
    hi.running_var, lo.running_var = torch.tensor([1.0, 4.0, 1.0]), torch.tensor([3.0, 4.0, 1.0])
    model = nn.Sequential(layer).eval()
    x = torch.randn(2, 3, 24, 24)
    with at_resolution(model, 24):  # halfway: every tensor is the plain average
        y = model(x)
    gamma, beta = torch.tensor([2.0, 2.0, 2.0]), torch.tensor([0.5, 1.0, 0.5])
    mean, var = torch.tensor([1.0, 0.0, 1.0]), torch.tensor([2.0, 4.0, 1.0])
    expected = (x - mean.view(1, 3, 1, 1)) / torch.sqrt(var.view(1, 3, 1, 1) + 1e-5) * gamma.view(1, 3, 1, 1) \
        + beta.view(1, 3, 1, 1)
    torch.testing.assert_close(y, expected)


def test_switching_is_model_state_and_restored(tiny_rsnet):
    set_resolution(tiny_rsnet, 12)
    with at_resolution(tiny_rsnet, 28):
        assert {layer.choice.res for layer in switchable_layers(tiny_rsnet)} == {28}
    assert {layer.choice.res for layer in switchable_layers(tiny_rsnet)} == {12}
    assert trained_resolutions(tiny_rsnet) == (28, 20, 12)


def test_training_an_interpolated_resolution_is_refused(tiny_rsnet):
    tiny_rsnet.train()
    with at_resolution(tiny_rsnet, 24), pytest.raises(EdgeresError, match="no private BN"):
        tiny_rsnet(torch.randn(2, 1, 24, 24))


def _inside_switchable(model, module):
    return any(module is bn for layer in switchable_layers(model) for bn in layer.bn.values())

