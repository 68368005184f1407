"""The kernel-flow speed benchmark runs (at a tiny size) and its two methods agree."""

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "flow_speed.py"


def test_flow_benchmark_runs_and_both_methods_agree():
    out = subprocess.run([sys.executable, str(SCRIPT), "--n-train", "60", "--n-test", "10", "--times", "4",
                          "--recompute", "2"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "speed-up of reuse over recompute" in out.stdout
    worst = float(re.search(r"max \|reuse - recompute\| on the compared times: (\S+)", out.stdout).group(1))
    assert worst < 1e-12      # the same formulas on the same kernel: round-off only
