"""bench/bench_rasp.py runs end to end in --smoke mode and records exact compiled models."""

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_rasp_smoke(tmp_path):
    sys.path.insert(0, str(REPO))
    from bench import bench_rasp

    assert bench_rasp.main(["--smoke", "--results-dir", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "rasp_compile.json").read_text())["rows"]
    assert {r["program"] for r in rows} == {"reverse", "histogram", "frac_prevs"}
    assert all(r["wrong"] == 0 and r["inputs_checked"] > 0 for r in rows)
    assert all(0 < r["nonzero"] <= r["params"] for r in rows)
    assert next(r for r in rows if r["program"] == "reverse")["layers"] == 2
    assert "| reverse | 5 |" in (tmp_path / "rasp_compile.md").read_text() and "non-zero" in (
        tmp_path / "rasp_compile.md").read_text()
