"""bench/bench_attention.py runs end to end in its --smoke mode and writes every result file."""

import json
import sys
from pathlib import Path


REPO = Path(__file__).resolve().parents[2]


def test_bench_attention_smoke(tmp_path):
    sys.path.insert(0, str(REPO))
    try:
        from bench import bench_attention  # an ImportError of the bench or of glassformer is a failure, not a skip
    finally:
        sys.path.remove(str(REPO))
    assert bench_attention.main(["--smoke", "--results-dir", str(tmp_path)]) == 0
    cost = json.loads((tmp_path / "attention_cost.json").read_text())
    assert set(cost["results"]) == set(bench_attention.COST_VARIANTS)
    assert all(r["by_length"]["128"]["time_ms"] > 0 for r in cost["results"].values())
    quality = json.loads((tmp_path / "attention_quality.json").read_text())
    assert set(quality["results"]) == set(bench_attention.QUALITY_VARIANTS)
    for name in ("attention_cost.png", "attention_quality.md", "attention_summary.md"):
        assert (tmp_path / name).stat().st_size > 0
