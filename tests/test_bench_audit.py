"""``bench/audit.py`` reports each phase's own peak memory, not the memory of the bench around it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "audit.py"
#: What the bench's own process holds when it starts a phase (it loaded the collection before).
PARENT_MB = 400


def test_a_phase_peak_rss_is_its_own_not_the_bench_process_s() -> None:
    held = b"\x01" * (PARENT_MB * 2**20)  # written, so resident
    code = "import runpy, sys; print(runpy.run_path(sys.argv[1])['peak_rss_mb']())"

    out = subprocess.run([sys.executable, "-c", code, str(BENCH)], check=True, capture_output=True, text=True)

    assert len(held) == PARENT_MB * 2**20  # still held while the phase ran
    assert float(out.stdout.split()[-1]) < PARENT_MB / 2  # the phase (interpreter and imports) alone
