"""Plots for `edgeres report` (matplotlib, Agg backend, imported only here and only when drawing)."""
import io
from collections import defaultdict
from pathlib import Path
from typing import Any

from edgeres import _optional
from edgeres._io import write_bytes


def _pyplot():
    matplotlib = _optional.require("matplotlib", "drawing report plots")
    matplotlib.use("Agg")  # files only: no display on CI or a Jetson over ssh
    import matplotlib.pyplot as plt
    return plt


def _save(fig, stem: Path, prefix: str = "") -> dict[str, Path]:
    """Write PNG and SVG through _io (atomic); returns {"<prefix>png": path, "<prefix>svg": path}."""
    paths = {}
    for ext in ("png", "svg"):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=ext, dpi=150, bbox_inches="tight")
        paths[f"{prefix}{ext}"] = write_bytes(stem.with_suffix(f".{ext}"), buffer.getvalue())
    return paths


def _series(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    lines = defaultdict(list)
    for row in rows:
        lines[row["series"]].append(row)
    return {name: sorted(points, key=lambda r: r["resolution"]) for name, points in lines.items()}


def _log_if_wide(set_scale, values: list[float]) -> None:
    """Log axis when values span more than 20x (e.g. PyTorch eager beside ORT), else small ones pile up at 0."""
    values = [v for v in values if v and v > 0]
    if values and max(values) / min(values) > 20:
        set_scale("log")


def plot_latency_vs_macs(rows: list[dict[str, Any]], stem: Path) -> dict[str, Path]:
    """p50 latency (ms) against MMACs per image, one line per series, points labelled by resolution."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, points in _series([r for r in rows if r.get("macs")]).items():
        xs, ys = [p["macs"] / 1e6 for p in points], [p["p50_ms"] for p in points]
        ax.plot(xs, ys, marker="o", label=name)
        for x, y, p in zip(xs, ys, points):
            ax.annotate(str(p["resolution"]), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    _log_if_wide(ax.set_yscale, [r["p50_ms"] for r in rows if r.get("macs")])
    return _finish(plt, fig, ax, ("MMACs per image", "p50 latency per batch (ms)",
                                  "Latency vs MACs (labels: resolution in px)"), stem)


def plot_accuracy_vs_latency(rows: list[dict[str, Any]], front: list[dict[str, Any]], stem: Path,
                             cascade: list[dict[str, Any]] = ()) -> dict[str, Path]:
    """Top-1 (%) against p50 latency (ms) for batch-1 rows, with the Pareto front as a step line; cascade rows
    (mean ms per image of `edgeres cascade`) as star markers labelled by method."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    groups = defaultdict(list)
    for row in cascade:
        groups[row["series"]].append(row)
    for name, points in groups.items():
        ax.scatter([p["mean_ms"] for p in points], [p["top1"] for p in points], marker="*", s=120,
                   label=f"{name} (mean ms/img)")
        for p in points:
            ax.annotate(p["method"], (p["mean_ms"], p["top1"]), textcoords="offset points", xytext=(4, -10),
                        fontsize=8)
    for name, points in _series([r for r in rows if r["batch"] == 1 and r.get("top1") is not None]).items():
        ax.scatter([p["p50_ms"] for p in points], [p["top1"] for p in points], label=name)
        for p in points:
            ax.annotate(str(p["resolution"]), (p["p50_ms"], p["top1"]), textcoords="offset points",
                        xytext=(4, 4), fontsize=8)
    ax.step([p["p50_ms"] for p in front], [p["top1"] for p in front], where="post", color="black", linestyle="--")
    ax.scatter([p["p50_ms"] for p in front], [p["top1"] for p in front], s=140, facecolors="none",
               edgecolors="black", label="Pareto front")
    _log_if_wide(ax.set_xscale, [r["p50_ms"] for r in rows if r["batch"] == 1 and r.get("top1") is not None]
                 + [r["mean_ms"] for r in cascade])
    return _finish(plt, fig, ax, ("latency, batch 1 (ms)", "top-1 (%)",
                                  "Accuracy vs latency across resolutions x precisions"), stem, "accuracy_")


def _finish(plt, fig, ax, labels: tuple[str, str, str], stem: Path, prefix: str = "") -> dict[str, Path]:
    """Axis labels (x, y, title), grid and legend, then PNG + SVG; the figure is closed either way."""
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_title(labels[2])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    try:
        return _save(fig, stem, prefix)
    finally:
        plt.close(fig)
