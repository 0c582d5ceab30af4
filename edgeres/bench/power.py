"""Jetson power: a pure tegrastats line parser, a background sampler, nvpmodel / jetson_clocks state.

tegrastats prints rails as `NAME cur/avg` in mW: JetPack 4 (L4T 32) without a unit, JetPack 5/6 with `mW`
on both numbers and a leading `MM-DD-YYYY HH:MM:SS` timestamp, JetPack 7 as `cur/avg/peak` (jetson_stats'
test_06_tegra_parse.py AGX Orin line). `NC` is an unused channel.
Total (module) power follows jetson_stats (jtop/core/power.py total_power): the module-input rail VDD_IN (Xavier
NX, Orin Nano/NX, AGX Xavier on JetPack 4) or POM_5V_IN (Nano/TX1) where present; otherwise (AGX Orin:
VIN_SYS_5V0, VDD_GPU_SOC, ...; AGX Xavier on JetPack 5: SYS5V, GPU, CPU, SOC, ...) no single rail is the module
and the total is the sum of all rails. `total_rule` says which rule gave the number; bench.json records it.
Energy per inference = average total power over a cell's steady window x window length / images run.
"""
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field

from edgeres.errors import EdgeresError

TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")  # module-input rails, in order of preference
SUM_RULE = "sum of all rails"
_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?:/\d+(?:mW)?)?(?=\s|$)")
_TEMP = re.compile(r"\b(\w+)@(-?\d+(?:\.\d+)?)C\b")
_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB\b")
_CPU = re.compile(r"\bCPU \[([^\]]*)\]")
_GR3D = re.compile(r"\bGR3D_FREQ (\d+)%(?:@\[?(\d+))?")
_EMC = re.compile(r"\bEMC_FREQ (\d+)%(?:@(\d+))?")
_STAMP = re.compile(r"^(\d\d-\d\d-\d{4} \d\d:\d\d:\d\d) ")


@dataclass(frozen=True)
class TegraSample:
    """One tegrastats line. Power in mW, frequencies in MHz, temperatures in deg C, memory in MB."""

    rails_mw: dict[str, tuple[int, int]]  # name -> (current, running average since tegrastats started)
    total_rail: str | None  # the module-input rail, None when there is none (then the total sums all rails)
    temps_c: dict[str, float] = field(default_factory=dict)
    cpu: list[tuple[int, int] | None] = field(default_factory=list)  # per core (load %, MHz); None = off
    gpu_load_pct: int | None = None
    gpu_mhz: int | None = None
    emc_load_pct: int | None = None
    ram_used_mb: int | None = None
    ram_total_mb: int | None = None
    timestamp: str | None = None

    @property
    def total_mw(self) -> int | None:
        """Current module power in mW by `total_rule` (None when the line has no rails at all)."""
        if self.total_rail:
            return self.rails_mw[self.total_rail][0]
        return sum(cur for cur, _ in self.rails_mw.values()) if self.rails_mw else None

    @property
    def total_rule(self) -> str | None:
        """Which rule gave total_mw: the module-input rail's name, or SUM_RULE (+ the rails summed)."""
        if self.total_rail or not self.rails_mw:
            return self.total_rail
        return f"{SUM_RULE} ({'+'.join(self.rails_mw)}): no module-input rail (VDD_IN/POM_5V_IN)"


def parse_tegrastats(line: str) -> TegraSample:
    """Parse one tegrastats output line (JetPack 4, 5 or 6 format); raise ValueError if it is not one."""
    line = line.strip()
    ram = _RAM.search(line)
    if ram is None:
        raise ValueError(f"not a tegrastats line: {line[:60]!r}")
    rails = {}
    for name, cur, avg in _RAIL.findall(line):
        if name != "NC" and name not in rails:  # NC = not connected, and may repeat (AGX Orin)
            rails[name] = (int(cur), int(avg))
    gr3d, emc, stamp = _GR3D.search(line), _EMC.search(line), _STAMP.match(line)
    return TegraSample(rails_mw=rails, total_rail=next((r for r in TOTAL_RAILS if r in rails), None),
                       temps_c={n: float(t) for n, t in _TEMP.findall(line)}, cpu=_cpus(line),
                       gpu_load_pct=_int(gr3d, 1), gpu_mhz=_int(gr3d, 2), emc_load_pct=_int(emc, 1),
                       ram_used_mb=int(ram.group(1)), ram_total_mb=int(ram.group(2)),
                       timestamp=stamp.group(1) if stamp else None)


def _int(match, group: int) -> int | None:
    return int(match.group(group)) if match and match.group(group) is not None else None


def _cpus(line: str) -> list[tuple[int, int] | None]:
    found = _CPU.search(line)
    if not found:
        return []
    cores = []
    for item in found.group(1).split(","):
        load, _, mhz = item.partition("%@")
        cores.append((int(load), int(mhz)) if mhz else None)  # "off" cores have no load@freq
    return cores


def parse_nvpmodel(text: str) -> dict[str, object]:
    """`nvpmodel -q` output -> {"name": "MAXN", "id": 0}; warnings before the mode line are skipped."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for i, ln in enumerate(lines):
        if ln.startswith("NV Power Mode:"):
            ident = lines[i + 1] if i + 1 < len(lines) and lines[i + 1].isdigit() else None
            return {"name": ln.split(":", 1)[1].strip(), "id": None if ident is None else int(ident)}
    raise ValueError("no 'NV Power Mode:' line in nvpmodel output")


def parse_jetson_clocks(text: str) -> dict[str, dict]:
    """`jetson_clocks --show` -> {"GPU": {"MinFreq":.., "MaxFreq":.., "CurrentFreq":.., "locked": bool}, "EMC": ..., "cpu0": ...}.

    A clock is locked (jetson_clocks applied) when its minimum, maximum and current frequency are equal.
    """
    clocks = {}
    for ln in text.splitlines():
        name, _, rest = ln.strip().partition(" ")
        freqs = dict(re.findall(r"(MinFreq|MaxFreq|CurrentFreq)=(\d+)", rest))
        if freqs:
            values = {k: int(v) for k, v in freqs.items()}
            values["locked"] = len(set(values.values())) == 1 and len(values) == 3
            clocks[name.rstrip(":")] = values
    return clocks


def missing_jetson_tools() -> str | None:
    """None on a Jetson (tegrastats on PATH), else what is missing (one phrase)."""
    return None if shutil.which("tegrastats") else "tegrastats is not on PATH (not a Jetson with JetPack)"


def power_state() -> dict[str, object]:
    """Power mode and clock state, each None when the tool is missing or needs root."""
    return {"nvpmodel": _tool(["nvpmodel", "-q"], parse_nvpmodel),
            "clocks": _tool(["jetson_clocks", "--show"], parse_jetson_clocks)}


def _tool(cmd: list[str], parse):
    if not shutil.which(cmd[0]):
        return None
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    try:
        return parse(run.stdout) if run.returncode == 0 else None
    except ValueError:
        return None


class TegrastatsSampler:
    """`with TegrastatsSampler(100) as s:` runs tegrastats in the background; s.samples = [(monotonic s, TegraSample)]."""

    def __init__(self, interval_ms: int = 100):
        self.interval_ms, self.samples = interval_ms, []

    def __enter__(self) -> "TegrastatsSampler":
        self.proc = subprocess.Popen(["tegrastats", "--interval", str(self.interval_ms)], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        return self

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                self.samples.append((time.monotonic(), parse_tegrastats(line)))
            except ValueError:
                continue  # a banner or partial line

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.thread.join(timeout=5)

    def window(self, start: float, end: float) -> list[TegraSample]:
        return [s for t, s in self.samples if start <= t <= end]


def power_summary(samples: list[TegraSample], seconds: float, images: int) -> dict[str, object]:
    """Average total power (W) over a window and energy per image (mJ) = W x seconds / images x 1000."""
    totals = [s.total_mw for s in samples if s.total_mw is not None]
    if not totals:
        return {"avg_power_w": None, "energy_per_image_mj": None, "samples": len(samples),
                "note": "no power rails in tegrastats output (try sudo)"}
    watts = sum(totals) / len(totals) / 1000.0
    return {"avg_power_w": round(watts, 4), "energy_per_image_mj": round(watts * seconds / images * 1000.0, 4),
            "samples": len(totals), "rail": samples[0].total_rail, "total_rule": samples[0].total_rule,
            "window_s": round(seconds, 3)}


def measure_power(cells, seconds: float = 3.0, interval_ms: int = 100, batch_of=None) -> dict[str, dict]:
    """Run each cell back to back for `seconds` under one tegrastats sampler; power per cell key.

    A steady window per cell (not the interleaved bursts) because tegrastats samples every interval_ms,
    far coarser than one burst. `batch_of(key)` gives images per run (default 1).
    """
    if missing_jetson_tools():
        raise EdgeresError(f"power measurement needs tegrastats: {missing_jetson_tools()}")
    results = {}
    with TegrastatsSampler(interval_ms) as sampler:
        for cell in cells:
            start, runs = time.monotonic(), 0
            while time.monotonic() - start < seconds:
                cell.run()
                runs += 1
            end = time.monotonic()
            images = runs * (batch_of(cell.key) if batch_of else 1)
            results[cell.key] = power_summary(sampler.window(start, end), end - start, images)
    return results
