"""MRED maths against hand-computed values (2 classes, batch 1), gradient routing and direction."""
import math

import pytest

torch = pytest.importorskip("torch")

from edgeres.train.losses import (  # noqa: E402
    distill_loss,
    distill_pairs,
    distill_weight,
    ensemble_logits,
    ensemble_loss,
    mred_terms,
    multires_ce,
)

Z_HIGH, Z_LOW = [2.0, 0.0], [0.0, 0.0]  # logits at 28 px and 12 px, label 0


def softmax(z):
    exps = [math.exp(v) for v in z]
    return [e / sum(exps) for e in exps]


def kl_hand(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q))


def logits(order=(28, 12)):
    values = {28: torch.tensor([Z_HIGH], requires_grad=True), 12: torch.tensor([Z_LOW], requires_grad=True)}
    return {r: values[r] for r in order}


TARGET = torch.tensor([0])


def test_multires_ce_is_the_sum_of_per_resolution_ce():
    expected = math.log(1 + math.exp(-2)) + math.log(2)  # 0.126928 + 0.693147
    assert multires_ce(logits(), TARGET).item() == pytest.approx(expected, abs=1e-6)
    assert multires_ce(logits(), TARGET).item() == pytest.approx(0.820075, abs=1e-6)


def test_ensemble_logits_and_loss_by_hand():
    alpha = torch.zeros(2)  # softmax -> 0.5 / 0.5
    ens = ensemble_logits(logits(), alpha)
    assert ens[0].tolist() == pytest.approx([1.0, 0.0])
    assert ensemble_loss(ens, TARGET).item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)
    skewed = ensemble_logits(logits(), torch.tensor([math.log(3.0), 0.0]))  # weights 0.75 / 0.25
    assert skewed[0].tolist() == pytest.approx([1.5, 0.0])


def test_full_distillation_by_hand():
    p_ens, p_high, p_low = softmax([1.0, 0.0]), softmax(Z_HIGH), softmax(Z_LOW)
    full = 2 / 3 * (kl_hand(p_ens, p_high) + kl_hand(p_ens, p_low) + kl_hand(p_high, p_low))
    vanilla = kl_hand(p_ens, p_high) + kl_hand(p_ens, p_low)
    ens = ensemble_logits(logits(), torch.zeros(2))
    assert distill_loss(logits(), ens, "full").item() == pytest.approx(full, abs=1e-6)
    assert distill_loss(logits(), ens, "vanilla").item() == pytest.approx(vanilla, abs=1e-6)


def test_direction_is_high_to_low_whatever_the_order():
    ens = torch.tensor([[1.0, 0.0]])
    forward = distill_loss(logits((28, 12)), ens).item()
    backward = distill_loss(logits((12, 28)), ens).item()
    assert forward == backward
    p_ens, p_high, p_low = softmax([1.0, 0.0]), softmax(Z_HIGH), softmax(Z_LOW)
    wrong = 2 / 3 * (kl_hand(p_ens, p_high) + kl_hand(p_ens, p_low) + kl_hand(p_low, p_high))
    assert abs(forward - wrong) > 1e-3  # the low->high direction would give a different value


def test_teachers_are_detached():
    """The high resolution gets distillation gradient only as a student of the ensemble, never as a teacher."""
    z = logits()
    ens = torch.tensor([[1.0, 0.0]])
    distill_loss(z, ens).backward()
    alone = torch.tensor([Z_HIGH], requires_grad=True)
    (2 / 3 * torch.nn.functional.kl_div(torch.log_softmax(alone, 1), torch.softmax(ens, 1),
                                        reduction="batchmean")).backward()
    assert torch.allclose(z[28].grad, alone.grad, atol=1e-7)


def test_kl_term_count_and_weight():
    assert len(distill_pairs(5, "full")) == 15 and distill_weight(5, "full") * 15 == pytest.approx(5.0)
    assert len(distill_pairs(5, "vanilla")) == 5 and distill_weight(5, "vanilla") == 1.0
    assert distill_pairs(2, "full") == [(0, 1), (0, 2), (1, 2)]
    assert all(t < s for t, s in distill_pairs(5))


def test_ensemble_loss_trains_alpha_only(tiny_spec):
    from edgeres.models import build_rsnet
    from edgeres.train.setup import MultiResolutionNet
    torch.manual_seed(0)
    module = MultiResolutionNet(build_rsnet(tiny_spec, (28, 12)), (28, 12), ensemble=True).train()
    views = [torch.randn(4, 1, 28, 28), torch.randn(4, 1, 12, 12)]
    _, ens = module(views)
    ensemble_loss(ens, torch.tensor([0, 1, 2, 3])).backward()
    grads = [p.grad for p in module.net.parameters()]
    assert all(g is None or torch.count_nonzero(g) == 0 for g in grads)
    assert module.alpha.grad is not None and torch.count_nonzero(module.alpha.grad) > 0


def test_mred_terms_modes_and_label_smoothing():
    ens = ensemble_logits(logits(), torch.zeros(2))
    rs = mred_terms(logits(), TARGET, ens)
    assert rs["total"].item() == pytest.approx((rs["ce"] + rs["ens"] + rs["dis"]).item())
    par = mred_terms(logits(), TARGET, mode="parallel")
    assert par["total"].item() == pytest.approx(0.820075, abs=1e-6) and par["dis"].item() == 0.0
    smooth = multires_ce({28: torch.tensor([Z_HIGH])}, TARGET, label_smoothing=0.2)
    # smoothed target (0.9, 0.1): -0.9 log p0 - 0.1 log p1
    p = softmax(Z_HIGH)
    assert smooth.item() == pytest.approx(-0.9 * math.log(p[0]) - 0.1 * math.log(p[1]), abs=1e-6)


def test_mean_reduction_divides_the_network_terms_by_s_and_keeps_the_alpha_gradient():
    """mean = sum / S for Σ CE and L_dis (and their gradients); L_ens and α's gradient are unchanged."""
    gen = torch.Generator().manual_seed(0)
    raw = {r: torch.randn(8, 10, generator=gen) for r in (28, 24, 20, 16, 12)}
    target = torch.randint(0, 10, (8,), generator=gen)
    out = {}
    for reduction in ("sum", "mean"):
        z = {r: v.clone().requires_grad_() for r, v in raw.items()}
        alpha = torch.tensor([0.3, 0.1, 0.0, -0.1, -0.2], requires_grad=True)
        terms = mred_terms(z, target, ensemble_logits(z, alpha), reduction=reduction)
        terms["total"].backward()
        out[reduction] = terms, z[12].grad, alpha.grad
    (s_terms, s_grad, s_alpha), (m_terms, m_grad, m_alpha) = out["sum"], out["mean"]
    for key in ("ce", "dis"):
        assert m_terms[key].item() == pytest.approx(s_terms[key].item() / 5, rel=1e-6)
    assert m_terms["ens"].item() == s_terms["ens"].item()
    assert torch.allclose(m_grad, s_grad / 5, atol=1e-8)
    assert torch.equal(m_alpha, s_alpha)
    with pytest.raises(ValueError, match="reduction"):
        mred_terms(raw, target, mode="parallel", reduction="max")
