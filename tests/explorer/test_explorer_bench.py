"""bench/bench_explorer.py runs end to end in its --smoke mode (5 requests per interaction, one thread) against
the real server process and reports every interaction."""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench import bench_explorer  # noqa: E402


def test_bench_smoke_times_every_interaction(tmp_path):
    results = bench_explorer.main(["--smoke", "--threads", "1", "--results-dir", str(tmp_path)])
    rows = results["runs"]["2-layer, 1 thread(s)"]
    assert {"type", "pick head", "ablate", "mean-ablate", "patch", "expand step", "new trace", "sample"} <= set(rows)
    assert all(r["n"] == 5 and 0 < r["p50_ms"] <= r["p95_ms"] <= r["max_ms"] for r in rows.values())
    text = (tmp_path / "explorer_latency_smoke.md").read_text()
    assert "| type |" in text and "| bare forward (in-process) |" in text
