"""Defaults that several stages share, each set once with its reason."""

# ONNX opset of exported graphs: TensorRT 8.5+ (JetPack 5/6) parses 17; 13 is the floor for per-axis Q/DQ
# (the build stage) and keeps TensorRT 8.2 (JetPack 4.6); 20 is the TorchScript exporter's maximum.
DEFAULT_OPSET, MIN_OPSET, MAX_OPSET = 17, 13, 20

# Batch used to feed a graph exported with a dynamic batch axis, wherever a stage feeds many images (build
# accuracy, calibration, low-bit checks). Static graphs are fed in their own batch.
DYNAMIC_BATCH = 64


def feed_batch(input_shape) -> int:
    """The batch a graph accepts: its static first dimension (1 for 1xCxRxR), else DYNAMIC_BATCH."""
    first = input_shape[0] if input_shape else None
    return first if isinstance(first, int) and first > 0 else DYNAMIC_BATCH


# Build: calibration and evaluation images per graph (benchmarks/results/build_defaults.md). MinMax ranges
# settle within 128 images; 500 eval images give top-1 within about +-4 points (95%, recorded per row as
# top1_ci95); `--eval-images all` measures the whole split.
BUILD_CALIB_IMAGES = 128
BUILD_EVAL_IMAGES = 500

# Cascade tuning: standard errors of the paired cascade-vs-highest top-1 difference that the tuning drop keeps
# inside --max-drop (choose.thresholds.tune_thresholds). Measured over 30 / 20 seeded tune/report halves of 8000 /
# 4000 images (benchmarks/results/cascade_margin*.md): the report-half drop exceeded 0.5 points in 43% / 50% of
# splits without a margin, 17% / 5% at 1, 10% / 5% at 2, for 0.04 / 0.07 more of the highest stage's cost.
CASCADE_MARGIN_SE = 2.0
# Latency tuning: candidates costing at most this fraction more than the cheapest count as equally cheap and the
# most accurate is taken (stage ms move 5-7% between runs of the same build, so a cheaper-by-less choice is a coin
# flip: cascade_speed lost 0.73 points to one). At margin 2 over 30 seeded splits of 8000 images the report drop
# exceeded 0.5 points in 3% / 3% / 0% / 3% of splits at 0 / 0.025 / 0.05 / 0.1, for cost ratios 0.463 / 0.470 /
# 0.476 / 0.489 (benchmarks/results/cascade_margin_tolerance.md). MACs are exact: 0 there.
CASCADE_COST_TOLERANCE = 0.05
# Images each method of `edgeres cascade`'s comparison runs back to back before the next method's turn. A
# deployment runs one method image after image; alternating every image (1) starts every call with the other
# methods' graphs in the caches. On the converged RS-Net CNN the cascade/highest ratio fell from 0.55 at 1 to
# 0.48 at 25 and stayed there to 100 (benchmarks/results/cascade_blocks.md, both passes; p50s 0.53 -> 0.45);
# a turn of 25 images x 3 methods lasts ~20 ms, far shorter than a shared CPU's drift, so the methods still see
# the same machine.
CASCADE_BLOCK = 25
