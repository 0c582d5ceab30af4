"""MACs (multiply-accumulates) and parameters from torch.utils.flop_counter, against hand-computed values."""
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from edgeres.export.flops import count_macs, count_params, model_cost  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread():
    """2 shared cores: OpenMP spinning with 2 threads made tiny convs 100x slower on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=False),  # 8*8 outputs * 4 ch * (1*3*3)      = 2304 MACs, 36 params
        nn.BatchNorm2d(4),                          # not counted (conventionally)      =    0 MACs,  8 params
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=4),  # 4*4 * 4 * (1*3*3)       =  576 MACs, 40 params
        nn.Conv2d(4, 6, 1),                         # 4*4 * 6 * 4                       =  384 MACs, 30 params
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(6, 3),                            # 6 * 3                             =   18 MACs, 21 params
    )


def test_tiny_net_macs_and_params_equal_hand_computed():
    cost = model_cost(tiny_net(), (1, 1, 8, 8))
    assert cost.macs == 2304 + 576 + 384 + 18
    assert cost.params == 36 + 8 + 40 + 30 + 21
    assert cost.to_json() == {"macs": 3282, "params": 135}


def test_macs_scale_with_batch_and_linear_alone():
    assert count_macs(tiny_net(), (3, 1, 8, 8)) == 3 * 3282
    assert count_macs(nn.Linear(10, 7), (2, 10)) == 2 * 10 * 7


def test_counting_leaves_training_mode_and_bn_statistics_alone():
    net = tiny_net().train()
    before = net[1].running_mean.clone(), int(net[1].num_batches_tracked)
    count_macs(net, (1, 1, 8, 8))
    assert net.training
    assert torch.equal(net[1].running_mean, before[0]) and int(net[1].num_batches_tracked) == before[1]


def test_resnet18_macs_match_published_and_scale_with_resolution_squared():
    import torchvision
    net = torchvision.models.resnet18(weights=None)
    at_224, at_96 = count_macs(net, (1, 3, 224, 224)), count_macs(net, (1, 3, 96, 96))
    assert at_224 == pytest.approx(1.82e9, rel=0.005)  # torchvision lists 1.81 GFLOPS (= GMACs) for resnet18
    assert at_96 == pytest.approx(0.33e9, rel=0.02)
    assert at_96 / at_224 == pytest.approx((96 / 224) ** 2, rel=0.03)  # ~R^2 (padding and the FC differ a little)
    assert count_params(net) == 11_689_512
