"""The 95% interval every accuracy record carries, and build's proportionate default evaluation."""
import json

import pytest
from click.testing import CliRunner

from edgeres.cli import cli
from edgeres.defaults import BUILD_EVAL_IMAGES
from edgeres.evaluate import Accuracy
from tests.test_build_support import tiny_export


@pytest.mark.parametrize("top1, count, low, high", [
    (50.0, 100, 40.383, 59.617),  # Wilson 95%: (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)
    (90.0, 500, 87.058, 92.332),
    (100.0, 20, 83.887, 100.0),  # the interval stays inside [0, 100] and is not empty at the edge
    (0.0, 20, 0.0, 16.113)])
def test_wilson_interval(top1, count, low, high):
    got = Accuracy(top1, top1, count).top1_interval()
    assert got == pytest.approx((low, high), abs=1e-3)
    assert Accuracy(top1, top1, count).to_json()["top1_ci95"] == [round(low, 2), round(high, 2)]


def test_build_evaluates_a_stated_default_share_or_everything(tmp_path_factory, tmp_path):
    export = tiny_export(tmp_path_factory)
    runner = CliRunner()
    for name, extra, count in (("default", [], BUILD_EVAL_IMAGES), ("all", ["--eval-images", "all"], 2000)):
        done = runner.invoke(cli, ["build", str(export), "--target", "ort-fp32", "--res", "16",
                                   "--out", str(tmp_path / name), *extra])
        assert done.exit_code == 0, done.output
        row = json.loads((tmp_path / name / "build.json").read_text())["artifacts"][0]
        assert row["accuracy"]["count"] == count
        low, high = row["accuracy"]["top1_ci95"]
        assert low < row["accuracy"]["top1"] < high


def test_report_tables_and_csv_carry_the_interval():
    from edgeres.manifests.bench import flat_rows, to_csv
    from edgeres.report import markdown_table
    accuracy = Accuracy(50.0, 80.0, 100).to_json()
    row = {"target": "ort-fp32", "resolution": 28, "batch": 1, "stats": {"p50": 1.0}, "accuracy": accuracy}
    flat = flat_rows({"rows": [row, {**row, "accuracy": None}]})
    table = markdown_table(flat).splitlines()
    assert table[0].endswith("| top-1 % | top-1 95% |") and table[2].endswith("| 50.00 | 40.4-59.6 |")
    assert table[3].endswith("| - | - |")  # a row without accuracy
    header, first, _ = to_csv(flat).splitlines()
    values = dict(zip(header.split(","), first.split(",")))
    assert (values["top1_low"], values["top1_high"], values["top1_images"]) == ("40.38", "59.62", "100")
