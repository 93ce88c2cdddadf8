"""``glassformer circuits build / score``: the interface scripts rely on."""

import json

import pytest

from glassformer.cli import main


@pytest.fixture(scope="module")
def quick_scores(tmp_path_factory):
    out = tmp_path_factory.mktemp("circuits")
    assert main(["circuits", "score", "--quick", "--out", str(out)]) == 0
    return out


def test_quick_score_writes_the_promised_shape(quick_scores):
    scores = json.loads((quick_scores / "scores.json").read_text())
    assert set(scores) == {"models", "methods"}
    assert scores["models"] >= 20
    for name in ("activation_patching_nodes", "activation_patching_edges", "eap", "eap_ig", "acdc",
                 "direct_logit_attribution", "head_detectors"):
        m = scores["methods"][name]
        assert set(m) == {"precision", "recall", "auroc", "seconds"}
        assert 0.0 <= m["auroc"] <= 1.0 and m["seconds"] >= 0
    # exact activation patching on uncompressed compiled models is perfect
    assert scores["methods"]["activation_patching_nodes"] == {**scores["methods"]["activation_patching_nodes"],
                                                              "precision": 1.0, "recall": 1.0, "auroc": 1.0}
    rows = [json.loads(line) for line in (quick_scores / "rows.jsonl").read_text().splitlines()]
    assert len(rows) == scores["models"] * len(scores["methods"])
    assert (quick_scores / "table.md").read_text().startswith("| method")


def test_score_reads_a_built_suite(quick_scores, tmp_path):
    suite = quick_scores / "suite"
    assert main(["circuits", "score", "--suite", str(suite), "--out", str(tmp_path), "--methods",
                 "direct_logit_attribution"]) == 0
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert list(scores["methods"]) == ["direct_logit_attribution"]
    index = json.loads((suite / "index.json").read_text())
    assert scores["models"] == len(index["models"])


def test_bad_input_is_one_line(tmp_path, capsys):
    assert main(["circuits", "score", "--suite", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("glassformer: error:") and "not a circuits suite" in err and "\n" not in err
    (tmp_path / "index.json").write_text("{not json")
    assert main(["circuits", "score", "--suite", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert main(["circuits", "score", "--quick", "--out", str(tmp_path / "o"), "--methods", "telepathy"]) == 2
    assert "unknown method" in capsys.readouterr().err
