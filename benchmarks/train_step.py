"""One training step of 5 resolutions vs the sum of 5 single-resolution steps (issue 15, part 3; goal <= 1.1x).

Not a test: a measurement. Runs edgeres.train.loop's own step (`_Trainer._step`: forward of every resolution
in one MultiResolutionNet call, MRED loss, backward, SGD step, schedule step) on random images, and against it
five single-resolution steps of the same net (CE only, one resolution per forward/backward/step), side by
side: each pair of a multi-resolution step and the five single steps is one `runtimes.timing.paired_burst`,
so the ratio compares steps run seconds apart. The MRED ("rsnet") and plain-CE ("parallel") multi steps are
both measured: the difference is the cost of the ensemble and distillation terms.

    nice -n 5 .venv/bin/python benchmarks/train_step.py                       # ~3 min on 2 shared cores
    nice -n 5 .venv/bin/python benchmarks/train_step.py --arch mobilenet_v2 --width-mult 0.5 --small-input \\
        --res 28,24,20,16,12 --batch 64

Writes benchmarks/results/train_step[_<arch>].{json,md}.

glibc's malloc returns the multi step's larger peak to the kernel after every step and page-faults it back in
the next (EPYC: 58k minor faults vs 7k for the singles); run it a second time with
MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=4294967296 to see the steps without that cost.
"""
import argparse
import statistics
import sys
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # this checkout's edgeres, not an installed one
from _machine import add_result_options, isa_text, machine_record, write_result  # noqa: E402
from _rsnet import rsnet  # noqa: E402


def trainer(net, res: tuple[int, ...], mode: str):
    """What loop._Trainer._step reads from its trainer, for `net` at `res` in `mode` (rsnet | parallel)."""
    import torch

    from edgeres.train import TrainConfig
    from edgeres.train.loop import _make_optimizer
    from edgeres.train.setup import MultiResolutionNet
    module = MultiResolutionNet(net, res, ensemble=mode == "rsnet")
    # the real config (its defaults: full MRED, mean reduction, wd 1e-4, momentum 0.9), never written anywhere
    config = TrainConfig(out="unused", res=res, mode=mode, lr=0.01)
    optimizer = _make_optimizer(module, config)
    return SimpleNamespace(config=config, ddp=module.train(), amp=False, optimizer=optimizer,
                           scaler=torch.amp.GradScaler("cuda", enabled=False),
                           scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0))


def step_fn(state, views, target):
    from edgeres.train.loop import _Trainer

    def run() -> None:
        _Trainer._step(state, views, target)
    return run


def cells(net, res: tuple[int, ...], batch: int, channels: int) -> dict:
    """{'rsnet', 'parallel', 'singles'} cells: one step each ('singles' = the five single-resolution steps)."""
    import torch

    from edgeres.runtimes.timing import Cell
    gen = torch.Generator().manual_seed(0)
    views = [torch.randn(batch, channels, r, r, generator=gen) for r in res]
    target = torch.randint(0, 10, (batch,), generator=gen)
    out = {mode: Cell(mode, step_fn(trainer(net, res, mode), views, target)) for mode in ("rsnet", "parallel")}
    singles = [step_fn(trainer(net, (r,), "parallel"), [v], target) for r, v in zip(res, views)]

    def all_singles() -> None:
        for single in singles:
            single()
    out["singles"] = Cell("singles", all_singles)
    return out


def measure(args) -> dict:
    import torch

    from edgeres.resolutions import parse_resolutions
    from edgeres.runtimes.timing import paired_burst, warm_up
    torch.set_num_threads(args.threads)
    res = parse_resolutions(args.res)
    net, _ = rsnet(args.arch, res, width_mult=args.width_mult, small_input=args.small_input)
    timed = cells(net, res, args.batch, 1)
    warm_up(list(timed.values()), 1)
    for turn in range(args.rounds):
        for mode in (("rsnet", "parallel") if turn % 2 == 0 else ("parallel", "rsnet")):
            paired_burst(timed[mode], timed["singles"], 0.0)  # one multi step, then the five single steps
    return {"resolutions": list(res),
            **{f"{k}_step_s": round(statistics.median(c.samples_ms) / 1000, 3) for k, c in timed.items()},
            **{f"{k}_vs_singles": round(statistics.median(timed[k].reference_ratios), 4) for k in ("rsnet", "parallel")},
            "ratios": {k: [round(r, 3) for r in timed[k].reference_ratios] for k in ("rsnet", "parallel")}}


def markdown(result: dict) -> str:
    m, s, r = result["machine"], result["settings"], result["result"]
    return "\n".join([
        f"# One training step of {len(r['resolutions'])} resolutions vs {len(r['resolutions'])} single-resolution steps",
        "", f"CPU: {m['cpu_model']} ({isa_text(m)}), torch threads {s['threads']}; load average at start "
        f"{m['load_average_1_5_15']}, at end {m['load_average_end']}. {m['shared']}.", "",
        f"Command: `{result['command']}`", "",
        f"{s['arch']} (width {s['width_mult']}, small input {s['small_input']}), 1 channel, 10 classes, batch "
        f"{s['batch']}, resolutions {r['resolutions']}, {s['rounds']} paired rounds.", "",
        "| step | median s | / sum of 5 single-resolution steps (median of paired rounds) |", "|---|---|---|",
        f"| 5 resolutions, MRED loss (rsnet) | {r['rsnet_step_s']} | {r['rsnet_vs_singles']} |",
        f"| 5 resolutions, CE only (parallel) | {r['parallel_step_s']} | {r['parallel_vs_singles']} |",
        f"| 5 single-resolution steps | {r['singles_step_s']} | 1 |", "",
        f"Per-round ratios: rsnet {r['ratios']['rsnet']}, parallel {r['ratios']['parallel']}."]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--width-mult", type=float, default=1.0)
    parser.add_argument("--small-input", action="store_true")
    parser.add_argument("--res", default="224,192,160,128,96")
    parser.add_argument("--batch", type=int, default=8)
    # 1: on the shared 2-core box two OpenMP threads made every step ~8x slower and scattered it 35x (each
    # parallel region waits for a descheduled thread); one thread measures the steps, not the neighbours
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    add_result_options(parser, None, "train_step, or train_step_ARCH for another --arch")
    args = parser.parse_args()
    result = {"machine": machine_record(args.threads, args.machine_note), "command": " ".join(["python", *sys.argv]),
              "settings": vars(args)}
    result["result"] = measure(args)
    result["machine"]["load_average_end"] = [round(x, 2) for x in __import__("os").getloadavg()]
    name = args.name or ("train_step" if args.arch == "resnet18" else f"train_step_{args.arch}")
    write_result(name, result, markdown(result))


if __name__ == "__main__":
    main()
