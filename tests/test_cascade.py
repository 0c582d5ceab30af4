"""Cascade: pure maths on hand-made logits, the runner on a tiny exported model, the CLI's one-line errors."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from edgeres._io import sha256_file
from edgeres.choose import cascade as cc
from edgeres.choose.compare import evaluate_cascade
from edgeres.cli import cli
from edgeres.errors import EdgeresError
from edgeres.manifests._base import write_manifest

torch = pytest.importorskip("torch")

RES = (12, 20, 28)  # low -> high, the cascade's stage order


def logits_for(probs):
    """Logits whose softmax is exactly `probs` (rows sum to 1)."""
    return np.log(np.asarray(probs, np.float64))


# ---------------------------------------------------------------- pure maths

def test_confidences_by_hand():
    z = logits_for([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25]])
    assert np.allclose(cc.max_softmax(z), [0.7, 0.4])
    assert np.allclose(cc.softmax_margin(z), [0.5, 0.05])
    with pytest.raises(EdgeresError, match="choose one of max-softmax, margin"):
        cc.confidence_fn("entropy")


def test_stop_stages_and_macs_accounting_exact():
    conf = np.array([[0.9, 0.2, 0.5, 0.1],
                     [0.0, 0.8, 0.3, 0.1],
                     [0.0, 0.0, 0.0, 0.0]])
    stops = cc.stop_stages(conf, [0.5, 0.6])
    assert stops.tolist() == [0, 1, 0, 2]  # >= threshold exits; the last stage always answers
    assert cc.cascade_macs(stops, [100, 300, 1000]).tolist() == [100, 400, 100, 1400]
    assert cc.cascade_macs(stops, [100, 300, 1000]).mean() == 500.0
    preds = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]])
    assert cc.pick(preds, stops).tolist() == [1, 6, 3, 12]


def test_a_stage_that_never_answers_is_skipped_and_costs_nothing():
    conf = np.array([[0.9, 0.2, 0.5, 0.1], [0.0, 0.8, 0.3, 0.1], [0.0, 0.0, 0.0, 0.0]])
    thresholds = [0.5, np.inf]  # the middle stage never answers: the runner does not run it
    stops = cc.stop_stages(conf, thresholds)
    assert stops.tolist() == [0, 2, 0, 2] and cc.stages_run(thresholds, 3).tolist() == [True, False, True]
    assert cc.cascade_macs(stops, [100, 300, 1000], thresholds).tolist() == [100, 1100, 100, 1100]
    alone = cc.stop_stages(conf, [np.inf, np.inf])  # the highest resolution alone pays only itself
    assert cc.cascade_macs(alone, [0.5, 0.2, 1.0], [np.inf, np.inf]).tolist() == [1.0] * 4


def test_tuning_skips_a_middle_stage_whose_cost_outweighs_its_exits():
    """Low is right on images 0-1, mid on 0-2, high on all. Costs 1/6/10 (ms): low+high 6.0 per image beats
    low+mid+high 6.5, mid+high 8.5 and high 10, so mid is skipped. Costs 1/1/10 (MACs): mid+high 3.5 beats
    low+mid+high 4.0 and low+high 6.0, so low is skipped instead."""
    labels = np.zeros(4, int)
    conf = np.array([[0.9, 0.9, 0.1, 0.1], [0.9, 0.9, 0.9, 0.1], [1.0, 1.0, 1.0, 1.0]])
    preds = np.array([[0, 0, 1, 1], [0, 0, 0, 1], [0, 0, 0, 0]])
    by_time = cc.tune_thresholds(conf, preds, labels, costs=[1, 6, 10], max_drop=0.0)
    assert math.isinf(by_time.thresholds[1]) and by_time.mean_cost == (1 + 1 + 11 + 11) / 4
    by_macs = cc.tune_thresholds(conf, preds, labels, costs=[1, 1, 10], max_drop=0.0)
    assert math.isinf(by_macs.thresholds[0]) and by_macs.mean_cost == (1 + 1 + 1 + 11) / 4


def two_stage_case():
    """6 images; the high stage is always right; the low stage is right exactly when it is confident."""
    labels = np.array([0, 1, 0, 1, 0, 1])
    low_conf = np.array([0.95, 0.9, 0.85, 0.6, 0.55, 0.5])
    low_pred = np.array([0, 1, 0, 0, 1, 0])  # wrong on the three unconfident images
    conf = np.vstack([low_conf, np.full(6, 0.99)])
    return conf, np.vstack([low_pred, labels]), labels


def test_tuning_with_zero_drop_escalates_exactly_the_wrong_images():
    conf, preds, labels = two_stage_case()
    tuning = cc.tune_thresholds(conf, preds, labels, costs=[10, 100], max_drop=0.0)
    assert tuning.thresholds == (0.85,)
    assert cc.stop_stages(conf, tuning.thresholds).tolist() == [0, 0, 0, 1, 1, 1]
    assert tuning.top1 == tuning.reference_top1 == 100.0
    assert tuning.mean_cost == (3 * 10 + 3 * 110) / 6


def test_paired_standard_error_by_hand():
    # differences 0, 0, -1, 0: mean -0.25, sample std 0.5, s.e. 0.5 / sqrt(4) = 0.25 -> 25 points
    assert cc.paired_se_points(np.array([1, 1, 0, 1]), np.array([1, 1, 1, 1])) == pytest.approx(25.0)
    assert cc.paired_se_points(np.ones(5), np.ones(5)) == 0.0


def test_a_margin_refuses_a_drop_that_only_just_fits_the_tuning_images():
    """400 images; the low stage is wrong on 2 of them (0.5 points), and on those it is the MOST confident, so no
    threshold escalates them alone. max_drop 0.5: without a margin every image exits low; one standard error of
    the paired difference (0.35 points) no longer fits, so the low stage is skipped."""
    n = 400
    labels = np.zeros(n, int)
    preds = np.zeros((2, n), int)
    preds[0, :2] = 1  # the low stage's two misses
    conf = np.vstack([np.linspace(0.5, 0.9, n)[::-1], np.ones(n)])  # the misses are its most confident images
    plain = cc.tune_thresholds(conf, preds, labels, costs=[1, 10], max_drop=0.5)
    assert plain.mean_cost == 1 and plain.top1 == 99.5
    held = cc.tune_thresholds(conf, preds, labels, costs=[1, 10], max_drop=0.5, margin_se=1.0)
    assert held.thresholds == (math.inf,) and held.mean_cost == 10 and held.top1 == 100.0
    # a drop budget that covers the margin too (0.5 + 0.353) lets them exit low again
    assert cc.tune_thresholds(conf, preds, labels, [1, 10], max_drop=0.86, margin_se=1.0).mean_cost == 1


def test_switching_cost_by_hand():
    from edgeres.choose.thresholds import switching_cost
    # stages 0 and 2 run (1 never answers): two images stop at 0, two escalate to 2
    stops, thresholds, extra = np.array([0, 0, 2, 2]), [0.5, math.inf], [3.0, 100.0, 7.0]
    # the escalated images pay stage 2's switch (7) and, for the image after them, stage 0's (3): (2*7 + 2*3) / 4
    assert switching_cost(stops, thresholds, extra) == pytest.approx(5.0)
    assert switching_cost(np.array([0, 0]), [0.5, math.inf], extra) == 0.0  # nothing escalates: no switch
    assert switching_cost(np.array([2, 2]), [math.inf, math.inf], extra) == 0.0  # the highest alone


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_switching_cost_equals_walking_the_calls_in_order(seed):
    """Images in a ring (the last one precedes the first): a call pays its stage's switch cost exactly when the
    call before it ran another stage."""
    from edgeres.choose.thresholds import stages_run, switching_cost
    rng = np.random.default_rng(seed)
    thresholds = [t if rng.random() < 0.7 else math.inf for t in rng.random(3)]
    active = np.flatnonzero(stages_run(thresholds, 4))
    stops = rng.choice(active, size=50)
    extra = rng.random(4)
    calls = [s for stop in stops for s in active[active <= stop]]
    walked = sum(extra[s] for prev, s in zip(calls[-1:] + calls[:-1], calls) if prev != s)
    assert switching_cost(stops, thresholds, extra) == pytest.approx(walked / len(stops), rel=1e-12)


def test_switch_costs_can_make_the_highest_stage_alone_cheapest():
    """Ten images: the low stage (0.10 ms) is right and sure on 8, wrong and unsure on 2; the high (0.15 ms) is
    right on all. Without switching costs escalating the 2 costs 0.13 ms per image; with 0.06 ms per switch it
    costs 0.13 + 0.2 * 0.06 (escalations) + 0.2 * 0.06 (the next image's low stage) = 0.154, more than 0.15."""
    labels = np.zeros(10, int)
    preds = np.array([[0] * 8 + [1] * 2, [0] * 10])
    conf = np.array([[0.9] * 8 + [0.4] * 2, [1.0] * 10])
    plain = cc.tune_thresholds(conf, preds, labels, costs=[0.10, 0.15], max_drop=0.0)
    assert plain.thresholds == (0.9,) and plain.mean_cost == pytest.approx(0.13)
    switching = cc.tune_thresholds(conf, preds, labels, costs=[0.10, 0.15], max_drop=0.0, switch_costs=[0.06, 0.06])
    assert switching.thresholds == (math.inf,) and switching.mean_cost == pytest.approx(0.15)
    cheap = cc.tune_thresholds(conf, preds, labels, costs=[0.10, 0.15], max_drop=0.0, switch_costs=[0.04, 0.04])
    assert cheap.thresholds == (0.9,) and cheap.mean_cost == pytest.approx(0.13 + 0.4 * 0.04)


def test_a_cost_tolerance_takes_the_most_accurate_of_the_nearly_cheapest():
    """Ten images; the low stage (cost 1) is wrong only on its least confident image, the high one (cost 3)
    right on all. Everything low costs 1.0 at 90%; escalating that image costs 1.3 at 100%."""
    labels = np.zeros(10, int)
    preds = np.array([[1] + [0] * 9, [0] * 10])
    conf = np.array([[0.3] + [0.9] * 9, [1.0] * 10])
    tune = lambda tolerance: cc.tune_thresholds(conf, preds, labels, [1.0, 3.0], max_drop=100.0,  # noqa: E731
                                                cost_tolerance=tolerance)
    assert (tune(0.0).mean_cost, tune(0.0).top1) == (1.0, 90.0)
    assert (tune(0.25).mean_cost, tune(0.25).top1) == (1.0, 90.0)  # 1.3 is 30% more: not within 25%
    assert tune(0.35).mean_cost == pytest.approx(1.3) and tune(0.35).top1 == 100.0
    assert tune(0.35).thresholds == (0.9,)
    assert tune(10.0).top1 == 100.0 and tune(10.0).mean_cost == pytest.approx(1.3)  # the cheapest of the most accurate


def test_the_cost_tolerance_never_takes_a_cascade_dearer_than_the_highest_alone():
    """100 images; the high stage (cost 1) misses image 0 only, which the low stage (0.03) gets right at 0.99;
    the low stage misses all the others. Exiting image 0 early gains a point but costs 0.03 + 0.99 = 1.02."""
    labels = np.zeros(100, int)
    preds = np.array([[0] + [1] * 99, [1] + [0] * 99])
    conf = np.array([[0.99] + [0.5] * 99, [1.0] * 100])
    for tolerance in (0.0, 0.05):
        tuning = cc.tune_thresholds(conf, preds, labels, costs=[0.03, 1.0], max_drop=0.0, cost_tolerance=tolerance)
        assert tuning.thresholds == (math.inf,) and tuning.mean_cost == 1.0 and tuning.top1 == 99.0


def test_tuning_spends_the_allowed_drop_and_no_more():
    conf, preds, labels = two_stage_case()
    # one wrong image of six costs 16.7 points: a 20-point budget lets exactly one more image exit early
    tuning = cc.tune_thresholds(conf, preds, labels, costs=[10, 100], max_drop=20.0)
    assert tuning.thresholds == (0.6,)
    assert tuning.top1 == pytest.approx(100 * 5 / 6) and tuning.top1 >= tuning.reference_top1 - 20
    # an unlimited drop exits everything at the lowest stage
    assert cc.tune_thresholds(conf, preds, labels, [10, 100], max_drop=100.0).mean_cost == 10.0


def test_tuning_three_stages_uses_the_middle_stage():
    labels = np.zeros(4, int)
    conf = np.array([[0.9, 0.3, 0.3, 0.3], [0.0, 0.9, 0.9, 0.2], [1, 1, 1, 1.0]])
    preds = np.array([[0, 1, 1, 1], [0, 0, 0, 1], [0, 0, 0, 0]])
    tuning = cc.tune_thresholds(conf, preds, labels, costs=[1, 10, 100], max_drop=0.0)
    assert cc.stop_stages(conf, tuning.thresholds).tolist() == [0, 1, 1, 2]
    assert tuning.mean_cost == (1 + 11 + 11 + 111) / 4


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tuning_matches_exhaustive_search_on_random_cases(seed):
    import itertools
    rng = np.random.default_rng(seed)
    labels, conf = rng.integers(0, 3, 30), rng.random((3, 30))
    preds = np.where(rng.random((3, 30)) < 0.4 + 0.4 * conf, labels, (labels + 1) % 3)
    macs, drop = [1, 4, 16], 5.0
    floor = cc.top1_pct(preds[-1], labels) - drop
    best = np.inf
    for thresholds in itertools.product(*[np.concatenate([[np.inf], c]) for c in conf[:-1]]):
        stops = cc.stop_stages(conf, thresholds)
        if cc.top1_pct(cc.pick(preds, stops), labels) >= floor - 1e-9:
            best = min(best, cc.cascade_macs(stops, macs, thresholds).mean())
    tuning = cc.tune_thresholds(conf, preds, labels, macs, drop)
    assert tuning.mean_cost == pytest.approx(best) and tuning.top1 >= floor - 1e-9


def test_random_baseline_reproducible_by_seed():
    a, b = cc.random_stages(50, 3, seed=7), cc.random_stages(50, 3, seed=7)
    assert a.tolist() == b.tolist() and set(a.tolist()) == {0, 1, 2}
    assert a.tolist() != cc.random_stages(50, 3, seed=8).tolist()


# ---------------------------------------------------------------- a tiny exported model

def tiny_net():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2),
                               torch.nn.Flatten(), torch.nn.Linear(32, 10)).eval()
    with torch.no_grad():
        net[4].weight.mul_(8.0)  # untrained: sharpen the softmax so confidences spread over 0.2-0.5
    return net


def tiny_macs(res):
    return 8 * 9 * res * res + 32 * 10


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    """An export directory shaped like the export stage's: one static 1x1xRxR graph per resolution."""
    out = tmp_path_factory.mktemp("export")
    net, graphs = tiny_net(), []
    for res in sorted(RES, reverse=True):
        torch.onnx.export(net, (torch.zeros(1, 1, res, res),), str(out / f"r{res}.onnx"), dynamo=False,
                          opset_version=17, input_names=["input"], output_names=["logits"])
        graphs.append({"resolution": res, "file": f"r{res}.onnx", "macs": tiny_macs(res), "params": 410,
                       "sha256": sha256_file(out / f"r{res}.onnx"),
                       "input": {"name": "input", "shape": [1, 1, res, res]},
                       "output": {"name": "logits", "shape": [1, 10]}})
    write_manifest(out / "export.json", "export", {
        "checkpoint": {"path": "none", "sha256": "0" * 64}, "data": "fashion-mnist-mini", "classes": [],
        "normalization": {"mean": [0.286], "std": [0.353]}, "eval_crop_ratio": 1.0, "opset": 17, "graphs": graphs,
        "switchable": None})
    return out


def test_runner_matches_running_the_chosen_stage_graphs_directly(export_dir):
    from edgeres.data import eval_image, normalize, open_images
    from edgeres.runtimes.ort import OrtRunner
    thresholds = [0.4, 0.3]
    runner = cc.CascadeRunner.from_manifest(export_dir, thresholds)
    assert [s.resolution for s in runner.stages] == list(RES)
    direct = {r: OrtRunner(export_dir / f"r{r}.onnx").infer for r in RES}
    images, stages_seen = open_images("fashion-mnist-mini", "val"), []
    for i in range(40):
        for s, res in enumerate(RES):
            logits = direct[res](normalize(eval_image(images.image(i), res, 1.0)[None], [0.286], [0.353]))
            if s == len(RES) - 1 or cc.softmax(logits).max() >= thresholds[s]:
                break
        result = runner(images.image(i))
        assert (result.prediction, result.stage, result.resolution) == (int(logits.argmax()), s, res)
        assert result.macs == sum(tiny_macs(r) for r in RES[:s + 1])
        stages_seen.append(s)
    assert len(set(stages_seen)) == 3, f"thresholds should spread images over all stages: {stages_seen}"


def test_runner_skips_a_stage_that_never_answers(export_dir):
    from edgeres.data import open_images
    runner = cc.CascadeRunner.from_manifest(export_dir, [0.4, None])  # None (cascade.json): never answers
    calls = []
    original = runner.logits
    runner.logits = lambda stage, x: calls.append(stage) or original(stage, x)
    images = open_images("fashion-mnist-mini", "val")
    results = [runner(images.image(i)) for i in range(20)]
    assert 1 not in calls and {r.stage for r in results} == {0, 2}  # some escalate, past the skipped stage
    assert all(r.macs == tiny_macs(RES[0]) + (tiny_macs(RES[2]) if r.stage == 2 else 0) for r in results)


RUNNER_WITHOUT_TORCH = """
import sys
sys.modules['torch'] = None
from edgeres.choose.cascade import CascadeRunner
from edgeres.data import open_images
runner = CascadeRunner.from_manifest(sys.argv[1], [0.1, 0.1], confidence="margin")
images = open_images("fashion-mnist-mini", "val")
print([[runner(images.image(i)).prediction, runner(images.image(i)).stage] for i in range(10)])
assert not [m for m in sys.modules if m.split(".")[0] == "torch" and sys.modules[m] is not None]
"""


def test_runner_works_with_torch_blocked(export_dir):
    run = subprocess.run([sys.executable, "-c", RUNNER_WITHOUT_TORCH, str(export_dir)], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    runner = cc.CascadeRunner.from_manifest(export_dir, [0.1, 0.1], confidence="margin")
    from edgeres.data import open_images
    images = open_images("fashion-mnist-mini", "val")
    assert json.loads(run.stdout) == [[runner(images.image(i)).prediction, runner(images.image(i)).stage]
                                      for i in range(10)]


def test_evaluate_cascade_end_to_end_and_reload(export_dir, tmp_path):
    report = evaluate_cascade(export_dir, max_drop=1.0, limit=60, seed=3, out=tmp_path)
    assert [r.method for r in report.rows] == ["highest", "random", "cascade"]
    assert report.tune_split == "val stratified half 1 of 60" and report.report_split == "val stratified half 2 of 60"
    assert report.row("highest").mean_macs == tiny_macs(28)
    assert report.tuning.top1 >= report.tuning.reference_top1 - 1.0
    saved = json.loads((tmp_path / "cascade.json").read_text())
    # strict JSON: a stage that never answers is stored as null, not Infinity
    assert saved["thresholds"] == [None if math.isinf(t) else t for t in report.tuning.thresholds]
    assert saved["random_seed"] == 3 and saved["tuning"]["margin_se"] == 2.0  # edgeres.defaults.CASCADE_MARGIN_SE
    assert len(saved["tuning"]["switch_costs"]) == 3  # cost="latency": one per stage (test_switch_costs_...)
    assert saved["tuning"]["cost_tolerance"] == 0.05  # edgeres.defaults.CASCADE_COST_TOLERANCE, for latency
    tune, rep = saved["splits"]["tune"], saved["splits"]["report"]
    assert tune["images"] == rep["images"] == 30 and sum(tune["class_histogram"]) == 30
    assert max(abs(a - b) for a, b in zip(tune["class_histogram"], rep["class_histogram"])) <= 1
    assert all(r["p50_latency_ms"] <= r["p90_latency_ms"] <= r["p99_latency_ms"] for r in saved["rows"])
    again = evaluate_cascade(export_dir, max_drop=1.0, limit=60, seed=3)
    assert again.row("random").top1 == report.row("random").top1  # same seed, same choices
    assert again.row("random").stage_share == report.row("random").stage_share
    reloaded = cc.CascadeRunner.from_cascade_json(tmp_path / "cascade.json")
    assert reloaded.thresholds == report.tuning.thresholds


def test_macs_cost_tunes_on_the_manifests_macs_without_switching_costs(export_dir, tmp_path):
    report = evaluate_cascade(export_dir, max_drop=1.0, limit=40, cost="macs", out=tmp_path)
    saved = json.loads((tmp_path / "cascade.json").read_text())["tuning"]
    assert saved["cost"] == "macs" and saved["switch_costs"] is None and saved["cost_tolerance"] == 0.0
    assert saved["stage_costs"] == [tiny_macs(r) for r in RES]
    assert report.tuning.mean_cost == pytest.approx(saved["mean_macs"], rel=1e-12)  # the same accounting


def test_methods_take_turns_of_block_images_with_the_first_rotating():
    from edgeres.choose.compare import turns
    schedule = [(list(positions), order) for positions, order in turns(5, 2, ["h", "r", "c"])]
    assert schedule == [([0, 1], ["h", "r", "c"]), ([2, 3], ["r", "c", "h"]), ([4], ["c", "h", "r"])]
    assert [list(p) for p, _ in turns(3, 1, ["h", "r", "c"])] == [[0], [1], [2]]  # 1: alternate every image
    assert [list(p) for p, _ in turns(3, 25, ["h", "r", "c"])] == [[0, 1, 2]]


def test_the_timing_order_changes_no_prediction(export_dir, tmp_path):
    # MACs costs and fixed threads: the same thresholds and sessions both times (measured ms could differ)
    alternating = evaluate_cascade(export_dir, max_drop=1.0, limit=40, cost="macs", fit_threads=False, block=1)
    in_turns = evaluate_cascade(export_dir, max_drop=1.0, limit=40, cost="macs", fit_threads=False,
                                block=np.int64(7), out=tmp_path)  # a numpy count is a count too
    assert alternating.tuning.thresholds == in_turns.tuning.thresholds
    for a, b in zip(alternating.rows, in_turns.rows):
        assert (a.method, a.top1, a.mean_macs, a.stage_share) == (b.method, b.top1, b.mean_macs, b.stage_share)
    assert json.loads((tmp_path / "cascade.json").read_text())["timing"]["block"] == 7


def test_fit_threads_keeps_one_thread_only_where_it_measured_faster(export_dir, monkeypatch):
    """A fake clock: one thread is faster at 12 px only (pool wake-ups on a small graph), slower above it."""
    from edgeres.choose import compare
    from edgeres.data import open_images
    speed = {(12, 1): 0.1, (12, 2): 0.3, (20, 1): 0.5, (20, 2): 0.4, (28, 1): 0.9, (28, 2): 0.6}
    last = {}

    def scorer(self):
        def score(x):
            last["key"] = (self.resolution, self.threads)
            return np.zeros((1, 10), np.float32)
        return score
    monkeypatch.setattr(cc.Stage, "scorer", scorer)
    monkeypatch.setattr(compare, "timed_call", lambda fn: (fn(), speed[last["key"]]))
    runner = cc.CascadeRunner(cc.load_source(export_dir, threads=2), [math.inf] * 2)
    compare._fit_threads(runner, open_images("fashion-mnist-mini", "val"), np.arange(12))
    assert [st.threads for st in runner.stages] == [1, 2, 2]


def test_switch_costs_are_the_paired_extra_of_a_call_after_another_stage(export_dir, monkeypatch):
    """A fake clock: every call costs its resolution / 100 ms, plus 0.05 right after another stage's call."""
    from edgeres.choose import compare
    from edgeres.data import open_images
    calls = []

    def scorer(self):
        def score(x):
            calls.append(self.resolution)
            return np.zeros((1, 10), np.float32)
        return score

    def clock(fn):
        fn()
        switched = len(calls) > 1 and calls[-2] != calls[-1]
        return None, calls[-1] / 100 + (0.05 if switched else 0.0)
    monkeypatch.setattr(cc.Stage, "scorer", scorer)
    monkeypatch.setattr(compare, "timed_call", clock)
    runner = cc.CascadeRunner(cc.load_source(export_dir, threads=1), [math.inf] * 2)
    extra = compare.switch_costs(runner, open_images("fashion-mnist-mini", "val"), np.arange(12))
    assert extra == pytest.approx([0.05, 0.05, 0.05], abs=1e-12)
    assert calls[:6] == [12, 12, 20, 20, 28, 28] and len(calls) == 12 * 3 * 2


def test_stage_threads_are_recorded_and_reloaded(export_dir, tmp_path):
    evaluate_cascade(export_dir, max_drop=1.0, limit=40, threads=2, out=tmp_path / "fit")
    saved = json.loads((tmp_path / "fit" / "cascade.json").read_text())
    fitted = [st["threads"] for st in saved["stages"]]
    assert set(fitted) <= {1, 2}
    reloaded = cc.CascadeRunner.from_cascade_json(tmp_path / "fit" / "cascade.json")
    assert [st.threads for st in reloaded.stages] == fitted
    assert [st.threads for st in cc.CascadeRunner.from_cascade_json(tmp_path / "fit" / "cascade.json", 3).stages] \
        == [3, 3, 3]  # an explicit count overrides them all
    evaluate_cascade(export_dir, max_drop=1.0, limit=40, threads=2, fit_threads=False, out=tmp_path / "fixed")
    fixed = json.loads((tmp_path / "fixed" / "cascade.json").read_text())
    assert [st["threads"] for st in fixed["stages"]] == [2, 2, 2]


# ---------------------------------------------------------------- CLI

def rgb_folder(root):
    from PIL import Image
    for split in ("train", "val"):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (16, 16), (40 * i, 90, 200)).save(root / split / cls / f"{i}.png")
    return root


@pytest.mark.parametrize("args, message", [
    (["{dir}", "--data", "{rgb}"], "has 3-channel images, the graphs take 1"),
    (["{dir}", "--target", "ort-int8"], "--target applies to a build directory"),
    (["{empty}"], "has neither build.json nor export.json"),
])
def test_cli_one_line_errors(export_dir, tmp_path, args, message):
    args = [a.format(dir=export_dir, empty=tmp_path, rgb=tmp_path / "rgb") for a in args]
    rgb_folder(tmp_path / "rgb")
    result = CliRunner().invoke(cli, ["cascade"] + args + ["--out", str(tmp_path / "o")])
    assert result.exit_code in (1, 2), result.output
    assert message in result.stderr and result.stderr.strip().count("\n") == 0


def test_cli_prints_the_table_and_writes_json(export_dir, tmp_path):
    result = CliRunner().invoke(cli, ["cascade", str(export_dir), "--max-drop", "1", "--limit", "40",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output + str(result.exception)
    assert "cascade" in result.stdout and (tmp_path / "cascade.json").exists()
