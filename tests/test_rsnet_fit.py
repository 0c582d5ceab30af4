"""check_resolutions_fit runs its dummy images on a meta-device copy: same sides and errors, model untouched."""
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from edgeres.errors import EdgeresError  # noqa: E402
from edgeres.models import check_resolutions_fit  # noqa: E402
from edgeres.models.switchable_bn import SwitchableBatchNorm2d, at_resolution  # noqa: E402

from .conftest import TINY_RES  # noqa: E402


def real_sides(model, resolutions, in_channels) -> dict[int, int]:
    """The last conv's output side per resolution from real forwards (the independent reference)."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    out = {}
    for res in resolutions:
        seen = []
        hook = convs[-1].register_forward_hook(lambda _m, _i, y: seen.append(y.shape[-1]))
        with torch.no_grad(), at_resolution(model, res):
            model(torch.zeros(1, in_channels, res, res))
        hook.remove()
        out[res] = seen[-1]
    return out


def test_sides_match_real_forwards_and_the_model_is_left_as_it_was(tiny_rsnet):
    tiny_rsnet.train()
    before = {k: v.clone() for k, v in tiny_rsnet.state_dict().items()}
    sides = check_resolutions_fit(tiny_rsnet, TINY_RES, 1)
    assert tiny_rsnet.training and all(p.device.type == "cpu" for p in tiny_rsnet.parameters())
    assert all(torch.equal(before[k], v) for k, v in tiny_rsnet.state_dict().items())  # BN stats untouched
    assert sides == real_sides(tiny_rsnet.eval(), TINY_RES, 1)


def test_a_resolution_too_small_for_the_network_is_a_one_line_error():
    net = nn.Sequential(nn.Conv2d(1, 4, 5), SwitchableBatchNorm2d(4, resolutions=(16, 8)), nn.Conv2d(4, 4, 5))
    assert check_resolutions_fit(net, (16,), 1) == {16: 8}
    with pytest.raises(EdgeresError, match="resolution 8 cannot pass through this network .*Kernel size"):
        check_resolutions_fit(net, (16, 8), 1)
