"""MRED losses (RS-Nets Sec. 3.3) as small pure functions over logits.

Logits arrive as a mapping {resolution: N x K tensor}; every function orders them high -> low itself, so the
distillation direction (higher resolution teaches lower) cannot flip with the order a user typed (FACTS,
"MRED as the RS-Nets authors coded it": the authors' PyTorch code took the order as given).

Index convention for distillation: p_0 is the ensemble, p_1..p_S the resolutions from highest to lowest.
"""
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F

KD_KINDS = ("full", "vanilla")
MODES = ("rsnet", "parallel")
REDUCTIONS = ("mean", "sum")


def ordered(logits: Mapping[int, torch.Tensor]) -> list[torch.Tensor]:
    """Logits sorted by resolution, highest first."""
    return [logits[r] for r in sorted(logits, reverse=True)]


def multires_ce(logits: Mapping[int, torch.Tensor], target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Σ_s CE(z_s, y): parallel training sums (not averages) the per-resolution losses (Sec. 3.1)."""
    return sum(F.cross_entropy(z, target, label_smoothing=label_smoothing) for z in ordered(logits))


def ensemble_weights(alpha: torch.Tensor) -> torch.Tensor:
    """softmax(α): S non-negative weights summing to 1, high -> low."""
    return torch.softmax(alpha, dim=0)


def ensemble_logits(logits: Mapping[int, torch.Tensor], alpha: torch.Tensor) -> torch.Tensor:
    """Σ_s softmax(α)_s · sg(z_s): N x K. The logits are detached, so only α can learn from this."""
    stacked = torch.stack([z.detach() for z in ordered(logits)])  # S x N x K
    if stacked.shape[0] != alpha.shape[0]:
        raise ValueError(f"{stacked.shape[0]} resolutions but {alpha.shape[0]} ensemble scores")
    return torch.einsum("s,snk->nk", ensemble_weights(alpha).to(stacked.dtype), stacked)


def ensemble_loss(ens_logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """L_ens = CE(z_ens, y): trains the ensemble scores α only (its inputs were detached)."""
    return F.cross_entropy(ens_logits, target, label_smoothing=label_smoothing)


def kl(teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    """KL(softmax(sg(teacher)) ‖ softmax(student)), summed over classes, averaged over the batch, T = 1.

    Same value as nn.KLDivLoss(reduction='batchmean') on (log_softmax(student), softmax(teacher)).
    """
    return F.kl_div(F.log_softmax(student, dim=1), F.softmax(teacher.detach(), dim=1), reduction="batchmean")


def distill_pairs(num_res: int, kind: str = "full") -> list[tuple[int, int]]:
    """(teacher, student) indices over p_0 = ensemble, p_1..p_S = resolutions high -> low.

    full: every t < s, S(S+1)/2 pairs; vanilla: only the ensemble teaches, S pairs.
    """
    if kind not in KD_KINDS:
        raise ValueError(f"unknown distillation kind {kind!r}: choose one of {KD_KINDS}")
    teachers = range(num_res) if kind == "full" else range(1)
    return [(t, s) for t in teachers for s in range(t + 1, num_res + 1)]


def distill_weight(num_res: int, kind: str = "full") -> float:
    """λ = 2/(S+1) for full MRED (mean KD term × S), 1 for vanilla (FACTS, authors' code)."""
    return 2.0 / (num_res + 1) if kind == "full" else 1.0


def distill_loss(logits: Mapping[int, torch.Tensor], ens_logits: torch.Tensor, kind: str = "full") -> torch.Tensor:
    """L_dis = λ · Σ_{(t,s)} KL(p_t ‖ p_s), teachers detached (gradient reaches students only)."""
    probs: Sequence[torch.Tensor] = [ens_logits, *ordered(logits)]
    pairs = distill_pairs(len(probs) - 1, kind)
    return distill_weight(len(probs) - 1, kind) * sum(kl(probs[t], probs[s]) for t, s in pairs)


def mred_terms(logits: Mapping[int, torch.Tensor], target: torch.Tensor, ens_logits: torch.Tensor | None = None,
               mode: str = "rsnet", kd: str = "full", label_smoothing: float = 0.0,
               reduction: str = "sum") -> dict[str, torch.Tensor]:
    """The loss terms of one step: {"ce", "ens", "dis", "total"} (scalars; ens/dis are 0 in parallel mode).

    rsnet: total = Σ CE + L_ens + L_dis (needs `ens_logits` from `ensemble_logits`); parallel: Σ CE only.
    reduction "sum" is the authors' code. "mean" divides the two terms that reach the network (Σ CE, L_dis)
    by S, so every network gradient is the sum's / S and one lr suits any S (S = 1 is unchanged); L_ens,
    which reaches only α, is not scaled, so α keeps the authors' gradient.
    """
    if mode not in MODES:
        raise ValueError(f"unknown loss mode {mode!r}: choose one of {MODES}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}: choose one of {REDUCTIONS}")
    scale = 1.0 / len(logits) if reduction == "mean" else 1.0
    ce = multires_ce(logits, target, label_smoothing) * scale
    zero = ce.new_zeros(())
    if mode == "parallel":
        return {"ce": ce, "ens": zero, "dis": zero, "total": ce}
    if ens_logits is None:
        raise ValueError("rsnet mode needs the ensemble logits (see ensemble_logits)")
    ens = ensemble_loss(ens_logits, target, label_smoothing)
    dis = distill_loss(logits, ens_logits, kd) * scale
    return {"ce": ce, "ens": ens, "dis": dis, "total": ce + ens + dis}
