"""LQ-Nets learned quantizers (Zhang et al., ECCV 2018) for any torchvision CNN, applied in place.

A K-bit quantizer holds a basis `v` (K values) and maps x to the nearest level `vᵀe`:
weights use e ∈ {−1,+1}^K with one basis per output channel, activations e ∈ {0,1}^K with one basis per
layer (non-negative levels for post-ReLU inputs). Levels are sorted and thresholds are their midpoints
(paper Sec. 3.2). In train mode every forward refits the basis in closed form (QEM, paper Alg. 1):
`v* = (BᵀB + δI)⁻¹ (Bᵀx + δv)` with B the codes of the current assignment, then `v ← 0.9v + 0.1v*`.
Gradients are straight-through: identity for weights, clipped at the top level for activations.
Constants follow microsoft/LQ-Nets as coded (see ../shared/FACTS.md, "LQ-Nets quantizer").

What gets quantized (`apply_lq`): every Conv2d except the first one run (LQ-Nets keeps conv0 and the last
FC in full precision; Linear layers are never touched). Depthwise convs (MobileNetV2) are quantized too:
one basis per output channel over its k·k weights — beyond LQ-Nets, which only did dense nets. A conv's
input activations are quantized only where they are provably non-negative (a probe forward sees them
≥ 0, i.e. they come out of a ReLU/ReLU6); MobileNetV2 block inputs are linear-bottleneck outputs (signed,
plus residual) and stay full precision, which `lq_layers(model)` reports layer by layer.
Bases are buffers named `*.weight_quantizer.basis` / `*.act_quantizer.basis`, shared by all resolutions of
an RS-Net (the private BNs stay private), as in the RS-Nets paper's quantized models.
"""
from typing import Any

import torch
from torch import nn

from edgeres.errors import EdgeresError

NORM_PPF_0_75 = 0.6745  # Φ⁻¹(0.75): the init scale of LQ-Nets' bases
MOVING_AVERAGE = 0.9  # v ← 0.9·v + 0.1·v* (LQ-Nets MOVING_AVERAGES_FACTOR)
WEIGHT_RIDGE = 1e-4  # δ of the weights' QEM, absolute, as coded in LQ-Nets
# LQ-Nets' activation QEM has no ridge and BᵀB is singular when a code column is never used (issue
# microsoft/LQ-Nets#2). A ridge relative to the element count keeps it invertible and leaves an unused
# basis direction where it was (δv on the right-hand side) while biasing used ones by ~1e-4.
ACT_RIDGE_PER_ELEMENT = 1e-4


def code_table(bits: int, signed: bool) -> torch.Tensor:
    """[2^K, K] codes: row i holds the bits of i (LSB first) as {0,1}, or {−1,+1} when `signed`."""
    rows = torch.arange(2 ** bits).unsqueeze(1)
    table = ((rows >> torch.arange(bits)) & 1).float()
    return table * 2 - 1 if signed else table


def weight_init_basis(bits: int, channels: int, fan_out: int) -> torch.Tensor:
    """[K, C]: v_j = 0.6745·sqrt(2/n)/2^(K−1)·2^j with n = k·k·out_channels (He init's fan-out)."""
    base = NORM_PPF_0_75 * (2.0 / fan_out) ** 0.5 / 2 ** (bits - 1)
    return (base * 2.0 ** torch.arange(bits, dtype=torch.float32)).unsqueeze(1).repeat(1, channels)


def act_init_basis(bits: int) -> torch.Tensor:
    """[K, 1]: v_j = 0.6745·2/(2^K−1)·2^j; 2 bits → [0.4497, 0.8993], levels {0, .45, .90, 1.35}."""
    return (NORM_PPF_0_75 * 2 / (2 ** bits - 1) * 2.0 ** torch.arange(bits, dtype=torch.float32)).unsqueeze(1)


def sorted_levels(basis: torch.Tensor, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Levels `codes @ basis` sorted ascending per channel: ([L, C] levels, [L, C] row of `codes` for each)."""
    return torch.sort(codes.to(basis.dtype) @ basis, dim=0)


def thresholds(levels: torch.Tensor) -> torch.Tensor:
    """[L−1, C] midpoints between consecutive sorted levels (the nearest-level decision boundaries)."""
    return (levels[1:] + levels[:-1]) / 2


def step(x: torch.Tensor, levels: torch.Tensor, thr: torch.Tensor) -> torch.Tensor:
    """Nearest level as a step function, y = l0 + Σ_i (l_{i+1} − l_i)·[x > t_i].

    `levels`/`thr` rows broadcast against `x` (weights: [C, M] with [C, 1] rows; activations: [1] rows).
    Written with comparisons, casts, products and sums only, so ONNX export gives Greater/Cast/Mul/Add.
    """
    y = levels[0] + (levels[1] - levels[0]) * (x > thr[0]).to(x.dtype)
    for i in range(1, thr.shape[0]):
        y = y + (levels[i + 1] - levels[i]) * (x > thr[i]).to(x.dtype)
    return y


def level_index(x: torch.Tensor, thr: torch.Tensor) -> torch.Tensor:
    """[C, M] index of each value's level (= number of thresholds below it), for x [C, M], thr [L−1, C]."""
    return torch.searchsorted(thr.t().contiguous(), x.contiguous())


def qem_basis(x: torch.Tensor, idx: torch.Tensor, order: torch.Tensor, codes: torch.Tensor,
              basis: torch.Tensor, ridge: float) -> torch.Tensor:
    """Closed-form basis refit v* = (BᵀB + δI)⁻¹(Bᵀx + δv) per channel, in float64; returns [K, C].

    x, idx: [C, M] values and their level index; order: [L, C] code row of each sorted level; basis [K, C].
    BᵀB and Bᵀx are accumulated per level (counts and sums), so B itself ([M, K]) is never materialised.
    """
    channels, levels = x.shape[0], order.shape[0]
    flat = (idx + levels * torch.arange(channels, device=x.device).unsqueeze(1)).reshape(-1)
    # bincount, not a float64 copy of x: activations of a big batch have ~1e8 elements
    counts = torch.bincount(flat, minlength=channels * levels).double().reshape(channels, levels)
    sums = torch.bincount(flat, x.reshape(-1), minlength=channels * levels).double().reshape(channels, levels)
    e = codes.double().to(x.device)[order.t()]  # [C, L, K] code of the l-th sorted level of channel c
    btb = torch.einsum("cl,clk,clj->ckj", counts, e, e) + ridge * torch.eye(e.shape[2], dtype=torch.float64,
                                                                             device=x.device)
    btx = torch.einsum("cl,clk->ck", sums, e) + ridge * basis.t().double()
    return torch.linalg.solve(btb, btx).t().to(basis.dtype)


class LQQuantizer(nn.Module):
    """A K-bit LQ quantizer over `channels` bases (buffer `basis` [K, C]); refits itself in train mode."""

    def __init__(self, bits: int, signed: bool, basis: torch.Tensor):
        super().__init__()
        self.bits, self.signed = bits, signed
        self.register_buffer("basis", basis.clone())
        self.register_buffer("codes", code_table(bits, signed), persistent=False)  # derivable: not saved

    def levels(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(levels [L, C] ascending, thresholds [L−1, C], code row of each level [L, C])."""
        levels, order = sorted_levels(self.basis, self.codes)
        return levels, thresholds(levels), order

    @torch.no_grad()
    def update(self, x2d: torch.Tensor, thr: torch.Tensor, order: torch.Tensor, ridge: float) -> None:
        """One QEM step on x2d [C, M] with the assignment of the current basis, then the moving average."""
        new = qem_basis(x2d.detach().float(), level_index(x2d.detach().float(), thr), order, self.codes,
                        self.basis, ridge)
        self.basis.mul_(MOVING_AVERAGE).add_((1 - MOVING_AVERAGE) * new)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, {'signed (weights)' if self.signed else 'unsigned (activations)'}"


class WeightQuantizer(LQQuantizer):
    """Per-output-channel K-bit weights, e ∈ {−1,+1}^K; straight-through (identity) gradient."""

    def __init__(self, bits: int, out_channels: int, fan_out: int):
        super().__init__(bits, True, weight_init_basis(bits, out_channels, fan_out))

    def quantize(self, w: torch.Tensor) -> torch.Tensor:
        """The nearest per-channel level of every weight (no update, no STE); same shape as w [O, ...]."""
        levels, thr, _ = self.levels()
        return step(w.reshape(w.shape[0], -1), levels.unsqueeze(-1), thr.unsqueeze(-1)).reshape(w.shape)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.training:
            _, thr, order = self.levels()
            self.update(w.reshape(w.shape[0], -1), thr, order, WEIGHT_RIDGE)
        q = self.quantize(w)
        return w + (q - w).detach()  # STE: dq/dw = 1 (LQ-Nets QuantizedWeight)


class ActQuantizer(LQQuantizer):
    """Per-layer K-bit activations, e ∈ {0,1}^K, for non-negative inputs; clipped straight-through gradient."""

    def __init__(self, bits: int):
        super().__init__(bits, False, act_init_basis(bits))
        self.frozen_step: tuple[float, tuple[tuple[float, float], ...]] | None = None

    def freeze(self) -> None:
        """Bake the current levels as Python constants: ONNX export then holds Greater(x, t_i) with scalars."""
        levels, thr, _ = self.levels()
        lv, th = levels[:, 0].tolist(), thr[:, 0].tolist()
        self.frozen_step = (lv[0], tuple((th[i], lv[i + 1] - lv[i]) for i in range(len(th))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.frozen_step is not None:
            return frozen_step(x, *self.frozen_step)
        levels, thr, order = self.levels()
        q = step(x, levels, thr)
        if not self.training:
            return q
        self.update(x.reshape(1, -1), thr, order, ACT_RIDGE_PER_ELEMENT * x.numel())
        clipped = torch.minimum(x, levels[-1].detach())  # zero gradient above the top level (LQ-Nets)
        return clipped + (q - clipped).detach()


def frozen_step(x: torch.Tensor, low: float, steps: tuple[tuple[float, float], ...]) -> torch.Tensor:
    """y = low + Σ delta·[x > t] for (t, delta) in `steps`: the deployed form of an activation quantizer."""
    y = (x > steps[0][0]).to(x.dtype) * steps[0][1]
    for t, delta in steps[1:]:
        y = y + (x > t).to(x.dtype) * delta
    return y + low if low != 0.0 else y


class LQConv2d(nn.Conv2d):
    """A Conv2d whose weights (and, if `a_bits`, input activations) pass LQ quantizers.

    Same `weight`/`bias` parameters and state-dict keys as the Conv2d it replaces, plus quantizer buffers.
    """

    def __init__(self, *args: Any, w_bits: int, a_bits: int | None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        k = self.kernel_size[0] * self.kernel_size[1]
        self.weight_quantizer = WeightQuantizer(w_bits, self.out_channels, k * self.out_channels)
        self.act_quantizer = ActQuantizer(a_bits) if a_bits else None
        self.frozen = False

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, w_bits: int, a_bits: int | None) -> "LQConv2d":
        """Wrap `conv`'s own parameters (no copy: an optimizer built before still sees them)."""
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                  conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode,
                  w_bits=w_bits, a_bits=a_bits, device=conv.weight.device)
        new.weight, new.bias = conv.weight, conv.bias
        return new.train(conv.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.act_quantizer is not None:
            x = self.act_quantizer(x)
        return self._conv_forward(x, self.weight if self.frozen else self.weight_quantizer(self.weight), self.bias)

    @torch.no_grad()
    def freeze_for_export(self) -> "LQConv2d":
        """`.weight` := its quantized values and the weight quantizer is bypassed; activation levels baked.

        For export only (BN folding rescales `.weight` afterwards); idempotent. Do it on a copy to keep training.
        """
        if not self.frozen:
            self.weight.copy_(self.weight_quantizer.quantize(self.weight))
            self.frozen = True
        if self.act_quantizer is not None:
            self.act_quantizer.freeze()
        return self

    def extra_repr(self) -> str:
        a_bits = self.act_quantizer.bits if self.act_quantizer is not None else "float"
        return f"{super().extra_repr()}, lq=w{self.weight_quantizer.bits}a{a_bits}, frozen={self.frozen}"


def apply_lq(model: nn.Module, w_bits: int, a_bits: int | None) -> nn.Module:
    """Quantize `model` in place with LQ-Nets: K-bit weights of every Conv2d but the first, and J-bit inputs
    of those convs whose inputs are non-negative (see the module docstring); returns `model`."""
    if any(isinstance(m, LQConv2d) for m in model.modules()):
        raise EdgeresError("the model is already LQ-quantized: apply_lq once, to a float model")
    order, nonneg = probe_conv_inputs(model)
    for name in order[1:]:  # LQ-Nets: the first conv stays full precision (Linear layers are never touched)
        conv = model.get_submodule(name)
        quantized = LQConv2d.from_conv(conv, w_bits, a_bits if nonneg[name] else None)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, quantized)
    return model


@torch.no_grad()
def probe_conv_inputs(model: nn.Module, side: int = 32) -> tuple[list[str], dict[str, bool]]:
    """Conv2d names in execution order and whether each one's input was ≥ 0 everywhere on random data.

    Post-ReLU(6) inputs are exactly ≥ 0; a signed input (BN output, residual sum) of 2×C×H×W random values
    being ≥ 0 everywhere by chance is negligible. Runs in eval mode, so BN statistics stay untouched.
    """
    convs = {m: n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    if not convs:
        raise EdgeresError("the model has no Conv2d layer to quantize with LQ-Nets")
    seen: dict[str, bool] = {}

    def record(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        seen.setdefault(convs[module], bool((inputs[0] >= 0).all()))
    hooks = [m.register_forward_pre_hook(record) for m in convs]
    first = next(iter(convs))
    was_training = model.training
    try:
        model.eval()(torch.randn(2, first.in_channels, side, side, generator=torch.Generator().manual_seed(0),
                                 device=first.weight.device))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return list(seen), seen


def lq_layers(model: nn.Module) -> list[dict[str, Any]]:
    """One row per Conv2d/Linear: name, kind, weight bits and activation bits (None = full precision)."""
    rows = []
    for name, m in model.named_modules():
        if isinstance(m, LQConv2d):
            a_bits = m.act_quantizer.bits if m.act_quantizer is not None else None
            rows.append({"name": name, "kind": "depthwise" if m.groups == m.in_channels > 1 else "conv",
                         "w_bits": m.weight_quantizer.bits, "a_bits": a_bits})
        elif isinstance(m, (nn.Conv2d, nn.Linear)):
            rows.append({"name": name, "kind": type(m).__name__, "w_bits": None, "a_bits": None})
    return rows


def is_quantizer_key(key: str) -> bool:
    """True for state-dict keys of LQ quantizer state (absent from a float checkpoint used as `--init`)."""
    return "quantizer" in key


@torch.no_grad()
def fit_weight_bases(model: nn.Module, steps: int = 20) -> nn.Module:
    """Fit every weight basis to the current weights by QEM alone (no moving average), in place.

    Useful after loading float weights into a fresh LQ model (`train --init`): the He-init bases of LQ-Nets
    assume untrained weight scales. Activation bases adapt during the first training steps (momentum 0.9).
    """
    for m in model.modules():
        if isinstance(m, LQConv2d):
            quantizer, w2d = m.weight_quantizer, m.weight.reshape(m.out_channels, -1).float()
            for _ in range(steps):
                _, thr, order = quantizer.levels()
                quantizer.basis.copy_(qem_basis(w2d, level_index(w2d, thr), order, quantizer.codes,
                                                quantizer.basis, WEIGHT_RIDGE))
    return model
