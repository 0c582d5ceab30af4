"""What every benchmark result records about the machine: CPU model, ISA flags, load, and that it may be shared."""
import os
import time

ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


def lscpu_flags() -> set[str]:
    """The CPU's feature flags as /proc/cpuinfo (and so `lscpu`) lists them."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


QUIET_NOTE = "2-core VM; nothing else of ours ran beside it"


def result_name(name: str) -> str:
    """A --name: a plain file name, so results stay in benchmarks/results/ (checked before anything is measured)."""
    import argparse
    if not name or os.path.basename(name) != name or name.startswith("."):
        raise argparse.ArgumentTypeError(f"{name!r}: give a plain file name (no folder, no leading dot)")
    return name


def add_result_options(parser, name: str | None, name_help: str = "") -> None:
    """--name (results/NAME.{json,md}; None: the script derives it, as `name_help` says) and --machine-note."""
    parser.add_argument("--name", default=name, type=result_name,
                        help="write benchmarks/results/NAME.{json,md} (default: " + (name or name_help) + ")")
    parser.add_argument("--machine-note", default=QUIET_NOTE,
                        help="what else shared the machine while this ran (recorded with the results)")


def machine_record(threads: int | None, shared_note: str) -> dict:
    """CPU model, which of ISA_FLAGS it has, cores, load averages and busy CPUs now, libraries, `shared_note`."""
    from edgeres.bench.machine import cpu_model, cpus_busy, library_versions, usable_cpus
    flags = lscpu_flags()
    return {"cpu_model": cpu_model(), "isa": {flag: flag in flags for flag in ISA_FLAGS}, "cpus": usable_cpus(),
            "threads": threads, "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
            "cpus_busy_at_start": cpus_busy(),
            "libraries": library_versions(), "shared": shared_note, "date": time.strftime("%Y-%m-%d %H:%M")}


def cpu_text(record: dict) -> str:
    """'CPU: <model> (<isa>), N cores; load average at start [..], CPUs busy at start B' for result headers."""
    busy = record.get("cpus_busy_at_start")
    return (f"CPU: {record['cpu_model']} ({isa_text(record)}), {record['cpus']} cores; load average at start "
            f"{record['load_average_1_5_15']}" + ("" if busy is None else f", CPUs busy at start {busy}"))


def isa_text(record: dict) -> str:
    """'avx2 avx512_vnni amx_int8 ...' (the flags present) for tables."""
    return " ".join(flag for flag, present in record["isa"].items() if present) or "none of " + ", ".join(ISA_FLAGS)


def write_result(name: str, result: dict, markdown: str) -> None:
    """benchmarks/results/<name>.json and .md (written atomically, strict JSON), and the table on stdout."""
    from pathlib import Path

    from edgeres._io import write_json, write_text
    results = Path(__file__).resolve().parent / "results"
    write_json(results / f"{name}.json", result)
    write_text(results / f"{name}.md", markdown)
    print(markdown)
