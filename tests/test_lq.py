"""LQ-Nets quantizers: hand-worked levels/encodings, init constants, QEM, STE, placement, training, export."""
import copy
import io

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from edgeres.models import (  # noqa: E402
    ArchSpec,
    build_rsnet,
    lq,  # noqa: E402
    set_resolution,
)
from edgeres.models.specialize import freeze_for_export  # noqa: E402
from tests.conftest import TINY_RES, randomize_bn  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models on 2 shared cores: intra-op threads contend with the other test processes (measured 35 s
    vs 2 s for the training test under load 7), so these tests run single-threaded."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_weight_levels_thresholds_and_encodings_match_hand_worked_example():
    # channel 0: v = (0.1, 0.3); channel 1: v = (0.3, 0.1). Levels ±(v1+v2) = ±0.4, ±|v2−v1| = ±0.2.
    basis = torch.tensor([[0.1, 0.3], [0.3, 0.1]])
    levels, order = lq.sorted_levels(basis, lq.code_table(2, signed=True))
    assert torch.allclose(levels, torch.tensor([[-0.4, -0.4], [-0.2, -0.2], [0.2, 0.2], [0.4, 0.4]]))
    assert torch.allclose(lq.thresholds(levels), torch.tensor([[-0.3, -0.3], [0.0, 0.0], [0.3, 0.3]]))
    # code rows (LSB first): 0=(−1,−1) 1=(+1,−1) 2=(−1,+1) 3=(+1,+1); −0.2 is (+1,−1) in ch 0, (−1,+1) in ch 1
    assert order.t().tolist() == [[0, 1, 2, 3], [0, 2, 1, 3]]
    q = lq.WeightQuantizer(2, out_channels=2, fan_out=1)
    q.basis.copy_(basis)
    w = torch.tensor([[-0.5, -0.29, -0.01, 0.01, 0.31, 1.0]] * 2)
    assert torch.allclose(q.quantize(w), torch.tensor([[-0.4, -0.2, -0.2, 0.2, 0.4, 0.4]] * 2))


def test_activation_levels_and_encodings_match_hand_worked_example():
    q = lq.ActQuantizer(2).eval()
    q.basis.copy_(torch.tensor([[1.0], [0.4]]))  # levels {0, v2, v1, v1+v2} = {0, .4, 1, 1.4}
    levels, thr, order = q.levels()
    assert torch.allclose(levels[:, 0], torch.tensor([0.0, 0.4, 1.0, 1.4]))
    assert torch.allclose(thr[:, 0], torch.tensor([0.2, 0.7, 1.2]))
    assert order[:, 0].tolist() == [0, 2, 1, 3]  # codes (0,0) (0,1) (1,0) (1,1)
    x = torch.tensor([-1.0, 0.1, 0.3, 0.8, 1.3, 5.0])
    assert torch.allclose(q(x), torch.tensor([0.0, 0.0, 0.4, 1.0, 1.4, 1.4]))
    q.freeze()  # the deployed (Python-constant) step function gives the same values
    assert torch.allclose(q(x), torch.tensor([0.0, 0.0, 0.4, 1.0, 1.4, 1.4]))


def test_init_constants_follow_lq_nets():
    assert torch.allclose(lq.act_init_basis(2)[:, 0], torch.tensor([0.6745 * 2 / 3, 0.6745 * 4 / 3]))
    assert torch.allclose(lq.act_init_basis(2)[:, 0], torch.tensor([0.4497, 0.8993]), atol=1e-4)
    conv = lq.LQConv2d(8, 16, 3, w_bits=2, a_bits=2)
    base = 0.6745 * (2 / (3 * 3 * 16)) ** 0.5 / 2  # n = k·k·out_channels (fan-out), / 2^(K−1)
    assert torch.allclose(conv.weight_quantizer.basis, torch.tensor([[base] * 16, [2 * base] * 16]))


def _weight_error(q, w):
    return ((q.quantize(w) - w) ** 2).sum().item()


def test_qem_reduces_weight_error_and_applies_the_moving_average():
    torch.manual_seed(0)
    w = torch.randn(8, 300) * 0.05
    q = lq.WeightQuantizer(2, 8, fan_out=1000).train()  # init scale deliberately off
    old, before = q.basis.clone(), _weight_error(q, w)
    _, thr, order = q.levels()
    fitted = lq.qem_basis(w, lq.level_index(w, thr), order, q.codes, old, lq.WEIGHT_RIDGE)
    q(w)
    assert torch.allclose(q.basis, 0.9 * old + 0.1 * fitted)
    for _ in range(30):
        q(w)
    assert _weight_error(q, w) < 0.7 * before
    exact = lq.WeightQuantizer(2, 8, fan_out=1000)
    exact.basis.copy_(fitted)
    assert _weight_error(exact, w) < before


def test_qem_reduces_activation_error_and_survives_singular_data():
    torch.manual_seed(0)
    x = torch.relu(torch.randn(4, 8, 6, 6)) * 3
    q = lq.ActQuantizer(2).train()
    errors = []
    for _ in range(40):
        errors.append(((q.eval()(x) - x) ** 2).mean().item())
        q.train()(x)
    assert errors[-1] < 0.8 * errors[0]
    before = q.basis.clone()
    q(torch.zeros(2, 3, 4, 4))  # every value at level 0: BᵀB = 0 without the ridge (LQ-Nets issue #2)
    assert torch.isfinite(q.basis).all() and torch.allclose(q.basis, before)


def test_ste_is_identity_for_weights_and_clipped_for_activations():
    wq = lq.WeightQuantizer(2, 2, fan_out=9).train()
    w = torch.randn(2, 5, requires_grad=True)
    (wq(w) * torch.arange(10.0).reshape(2, 5)).sum().backward()
    assert torch.equal(w.grad, torch.arange(10.0).reshape(2, 5))
    aq = lq.ActQuantizer(2).train()
    top = float(lq.act_init_basis(2).sum())  # 1.349: the top level before this step's update
    x = torch.tensor([0.0, 0.3, 1.0, top - 0.01, top + 0.01, 4.0], requires_grad=True)
    aq(x).sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0]


def _tiny(quant="w2a2", name="mobilenet_v2"):
    torch.manual_seed(0)
    spec = ArchSpec(name, num_classes=10, in_channels=1, width_mult=0.25 if name == "mobilenet_v2" else 1.0,
                    small_input=True, quant=quant)
    return build_rsnet(spec, TINY_RES)


@pytest.fixture(scope="module")
def tiny_lq():
    """A shared MobileNetV2 x0.25 w2a2 RS-Net for read-only tests (copy it before changing it)."""
    return _tiny()


def test_first_conv_and_last_fc_stay_full_precision_and_signed_inputs_stay_float(tiny_lq):
    model = tiny_lq
    rows = {r["name"]: r for r in lq.lq_layers(model)}
    assert type(model.features[0][0]) is nn.Conv2d and type(model.classifier[1]) is nn.Linear
    assert rows["features.0.0"]["w_bits"] is None and rows["classifier.1"]["w_bits"] is None
    assert rows["features.1.conv.0.0"] == {"name": "features.1.conv.0.0", "kind": "depthwise", "w_bits": 2,
                                           "a_bits": 2}  # input = stem ReLU6 output
    assert rows["features.2.conv.0.0"]["a_bits"] is None  # input = linear bottleneck output (signed)
    assert rows["features.2.conv.2"]["a_bits"] == 2  # projection after depthwise + ReLU6
    assert rows["features.18.0"]["a_bits"] is None and rows["features.18.0"]["w_bits"] == 2
    resnet = lq.lq_layers(_tiny("w2a2", "resnet18"))
    assert all(r["a_bits"] == 2 for r in resnet[1:-1]) and resnet[0]["w_bits"] is None  # all inputs post-ReLU


def test_quantizer_state_keys_and_init_from_a_float_checkpoint(tiny_lq):
    model, plain = copy.deepcopy(tiny_lq), _tiny(quant=None)
    extra = set(model.state_dict()) - set(plain.state_dict())
    assert extra and all(lq.is_quantizer_key(k) for k in extra)
    assert set(plain.state_dict()) <= set(model.state_dict())
    missing, unexpected = model.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and set(missing) == extra
    with pytest.raises(lq.EdgeresError, match="already LQ-quantized"):
        lq.apply_lq(model, 2, 2)


def test_fit_weight_bases_reduces_error_on_trained_scale_weights():
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 1))
    lq.apply_lq(model, 2, None)
    conv = model[2]
    conv.weight.data *= 7  # a "trained" scale far from He init
    before = _weight_error(conv.weight_quantizer, conv.weight.reshape(conv.out_channels, -1))
    lq.fit_weight_bases(model, steps=10)
    assert _weight_error(conv.weight_quantizer, conv.weight.reshape(conv.out_channels, -1)) < 0.5 * before


def test_model_trains_a_few_steps_at_every_resolution_without_nans(tiny_lq):
    model = copy.deepcopy(tiny_lq).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    bases = {k: v.clone() for k, v in model.state_dict().items() if "quantizer" in k}
    for step in range(2):
        for res in TINY_RES:
            set_resolution(model, res)
            loss = nn.functional.cross_entropy(model(torch.randn(4, 1, res, res)), torch.arange(4))
            opt.zero_grad()
            loss.backward()
            opt.step()
            assert torch.isfinite(loss)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(bases[k], v) for k, v in model.state_dict().items() if k in bases)


def test_frozen_model_folds_bn_and_exports_a_step_function_that_ort_reproduces(tiny_lq):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = copy.deepcopy(tiny_lq)
    randomize_bn(model)
    model.eval()
    set_resolution(model, 20)
    x = torch.randn(3, 1, 20, 20)
    with torch.no_grad():
        expected = model(x)
        frozen = copy.deepcopy(model)
        freeze_for_export(frozen)
        assert torch.allclose(frozen(x), expected, atol=1e-5)
        conv = frozen.features[2].conv[0][0]
        assert all(len(row.unique()) <= 4 for row in conv.weight.reshape(conv.out_channels, -1))
        fused = torch.nn.utils.fusion.fuse_conv_bn_eval(conv, frozen.features[2].conv[0][1].private(20))
        assert type(fused) is lq.LQConv2d and fused.frozen
        assert all(len(row.unique()) <= 4 for row in fused.weight.reshape(fused.out_channels, -1))
    buffer = io.BytesIO()
    torch.onnx.export(frozen, (x,), buffer, dynamo=False, opset_version=17, input_names=["x"],
                      output_names=["logits"])
    graph = onnx.load_from_string(buffer.getvalue()).graph
    n_act = sum(r["a_bits"] is not None for r in lq.lq_layers(model))
    assert sum(n.op_type == "Greater" for n in graph.node) == 3 * n_act  # 2 bits: 3 thresholds per quantizer
    assert not {"TopK", "MatMul"} & {n.op_type for n in graph.node}  # levels baked as constants
    got = ort.InferenceSession(buffer.getvalue()).run(None, {"x": x.numpy()})[0]
    assert abs(got - expected.numpy()).max() < 1e-4
