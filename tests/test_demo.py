"""The README's main job (`edgeres demo`) at toy size: every stage runs and hands its manifest on."""
import json

from click.testing import CliRunner

from edgeres.cli import cli


def test_demo_pipeline_at_toy_size(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", "--toy", "--out", str(out)])
    assert result.exit_code == 0, result.output
    checkpoint = json.loads((out / "checkpoint" / "checkpoint.json").read_text())
    assert checkpoint["resolutions"] == [28, 20, 12] and len(checkpoint["ensemble_weights"]) == 3
    export = json.loads((out / "export" / "export.json").read_text())
    assert [g["resolution"] for g in export["graphs"]] == [28, 20, 12]
    build = json.loads((out / "build" / "build.json").read_text())
    built = {(a["target"], a["resolution"]) for a in build["artifacts"]}
    assert built == {(t, r) for t in ("ort-fp32", "ort-int8") for r in (28, 20, 12)}
    assert all(a["accuracy"]["count"] == 200 for a in build["artifacts"])
    bench = json.loads((out / "bench" / "bench.json").read_text())
    assert {(r["target"], r["resolution"]) for r in bench["rows"]} == built
    cascade = json.loads((out / "cascade" / "cascade.json").read_text())
    assert [r["method"] for r in cascade["rows"]] == ["highest", "random", "cascade"]
    for name in ("report.md", "latency_vs_macs.png", "accuracy_vs_latency.png"):
        assert (out / "report" / name).stat().st_size > 0
    assert "run-time choice" in (out / "report" / "report.md").read_text()
