"""`medvl doctor` by default (no imports of what it checks) against `medvl doctor --deep` (imports everything), in the
same run: wall time, CPU time and peak memory of fresh processes.

Run under ``flock /tmp/medvl-heavy.lock`` so no other benchmark shares the cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import write_record  # noqa: E402

REPEATS = int(os.environ.get("MEDVL_BENCH_REPEATS", "3"))


def _medvl() -> list[str]:
    script = Path(sys.executable).with_name("medvl")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "medvl"]


def _run(args: list[str]) -> tuple[float, float]:
    before = os.times()
    start = time.perf_counter()
    subprocess.run(args, capture_output=True, text=True, check=False, cwd=ROOT)
    wall = time.perf_counter() - start
    after = os.times()
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def _peak_rss_mb(args: list[str]) -> float:
    """Peak RSS of one child (``ru_maxrss`` of a wrapper process that runs only it)."""
    code = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], capture_output=True); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True).stdout
    return round(int(out.strip()) / 1024, 1)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = [*_medvl(), "doctor", "--json", "--workspace", str(Path(tmp) / "ws")]
        fast = [_run(base) for _ in range(REPEATS)]
        deep = [_run([*base, "--deep"]) for _ in range(REPEATS)]
        rss = {"default_mb": _peak_rss_mb(base), "deep_mb": _peak_rss_mb([*base, "--deep"])}
    figures = {"default_s": round(min(w for w, _ in fast), 3), "deep_s": round(min(w for w, _ in deep), 3),
               "default_cpu_s": round(min(c for _, c in fast), 3), "deep_cpu_s": round(min(c for _, c in deep), 3),
               "peak_rss": rss, "load_average": round(os.getloadavg()[0], 2)}
    write_record(
        "doctor",
        baseline="`medvl doctor --deep`: imports every package, loads OpenSlide and the DICOM decoders, lists devices "
                 "(what `medvl doctor` did by default before)",
        figures=figures, ratio=figures["deep_s"] / figures["default_s"],
        ratio_meaning="wall time of --deep / of the default run (higher is better)",
        target="`medvl doctor` under 3 s by default", passed=figures["default_s"] < 3.0,
        notes=f"best of {REPEATS} fresh processes each; the default run finds packages with find_spec and reads "
              "versions from one scan of the installed metadata.",
    )


if __name__ == "__main__":
    main()
