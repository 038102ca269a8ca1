"""bench/page_latency.py in its smallest form: the bare baseline and Home's first paint, once,
as JSON. It checks that the bench runs and reports what it says; no timing is asserted."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_the_bench_measures_the_baseline_and_a_first_paint():
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("the bench drives Debian's chromium at /usr/bin/chromium")
    out = subprocess.run([sys.executable, "bench/page_latency.py", "--only", "home", "--repeats", "1", "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    rows = {r["interaction"]: r for r in result["rows"]}
    assert {"bare page: rerun (baseline)", "bare page: first paint", "Home: first paint"} <= set(rows)
    assert rows["bare page: rerun (baseline)"]["ratio_to_bare_rerun"] == 1.0
    assert all(r["median_ms"] > 0 for r in rows.values())
    assert len(result["load_average"]) == 3
