"""MACs and parameter count of a model at one input shape, from one counter: `torch.utils.flop_counter`.

Convention: **MACs = multiply-accumulates of convolutions and matrix products** (the RS-Nets README's
"FLOPs (Multiply-Adds)"; fvcore and thop count the same). `FlopCounterMode` counts 2 FLOPs per MAC for
conv/mm (torch/utils/flop_counter.py), so we halve its total. BatchNorm, activations, pooling and residual
adds are not counted (conventionally excluded; a folded graph has no BN anyway).
"""
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Cost:
    """Compute and size of a model at one input shape."""

    macs: int  # multiply-accumulates for one forward pass of the whole input batch
    params: int  # number of parameter elements (not bytes)

    def to_json(self) -> dict[str, int]:
        return {"macs": self.macs, "params": self.params}


def count_params(model) -> int:
    """Number of parameter elements (shared parameters counted once)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model, input_shape: Sequence[int]) -> int:
    """MACs of one forward pass on a zero tensor of `input_shape` (NCHW), in eval mode, without gradients.

    Eval mode matters: a train-mode forward would update BatchNorm running statistics.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    param = next(model.parameters(), None)
    x = torch.zeros(tuple(input_shape), device=None if param is None else param.device)
    was_training = model.training
    model.eval()
    try:
        # display=False: printing the table would need the `tabulate` package
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def model_cost(model, input_shape: Sequence[int]) -> Cost:
    """MACs (multiply-accumulates) and parameter count of `model` at `input_shape` (NCHW)."""
    return Cost(count_macs(model, input_shape), count_params(model))
