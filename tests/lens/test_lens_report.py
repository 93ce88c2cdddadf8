"""The HTML report is one self-contained file for every kind of model; `glassformer inspect` writes it; a
real headless browser renders it (skipped when Debian's chromium is not installed)."""

import argparse
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from lens_models import inputs_for, make_model
from matplotlib import image as mpimg

from glassformer.errors import InputError
from glassformer.lens import cli
from glassformer.lens.report import build_report, write_report
from glassformer.train.checkpoint import save_model
from glassformer.train.tokenizers import CharTokenizer

CHARS = "abcdefghijklmnopqrs "  # 20 characters: the test models' vocabulary
EXTERNAL = re.compile(r"""(src|href)\s*=\s*["'](?!data:|#)""", re.IGNORECASE)


def assert_self_contained(page: str) -> None:
    assert not EXTERNAL.search(page), "the report must not load anything from outside the file"
    assert "<script" not in page and "@import" not in page and "url(" not in page
    assert page.count('<img alt="') >= 5 and page.count('src="data:image/png;base64,') == page.count("<img")


@pytest.mark.parametrize("overrides", [{}, {"arch": "encoder-decoder"}, {"arch": "encoder"},
                                       {"norm": "none", "attn_only": True, "positional": "none"}],
                         ids=["decoder", "encoder-decoder", "encoder", "compiled-like"])
def test_the_report_is_self_contained_and_small(overrides):
    model = make_model(**overrides)
    tokenizer = None if overrides.get("norm") == "none" else CharTokenizer(CHARS)  # compiled models have no text
    page, summary = build_report(model, inputs_for(model, batch=2), tokenizer=tokenizer, title="test <report>")
    assert_self_contained(page)
    assert len(page.encode()) < 400_000
    for heading in ("Attention patterns", "Logit lens", "Direct logit attribution", "Head detectors", "Token by token"):
        assert f">{heading}</h2>" in page
    assert "test &lt;report&gt;" in page
    assert len(summary["prediction"]) == 5 and set(summary["strongest_heads"]) == {"previous_token", "first_token",
                                                                                    "duplicate_token", "induction"}
    if overrides.get("arch") == "encoder-decoder":
        assert "cross-attention" in page and "Source (" in page
    assert "attribution" in summary  # every model here is pre-norm (or norm-free): attribution is exact


def test_a_post_norm_model_gets_a_note_instead_of_attribution():
    model = make_model(norm_position="post")
    page, summary = build_report(model, inputs_for(model, batch=1))
    assert "Not available for this model" in page and "pre-norm" in page and "attribution" not in summary


def inspect(argv):
    parser = argparse.ArgumentParser(prog="glassformer")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["inspect", *argv])
    return args.func(args)


def test_inspect_command_writes_the_report(tmp_path, capsys):
    model = make_model()
    save_model(tmp_path / "ckpt", model, tokenizer=CharTokenizer(CHARS))
    out = tmp_path / "report.html"
    assert inspect([str(tmp_path / "ckpt"), "--input", "abcab abc", "--html", str(out), "--answer", "c", "--fold"]) == 0
    assert_self_contained(out.read_text())
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "strongest induction head" in printed and "logit('c')" in printed
    with pytest.raises(InputError, match="--input"):
        inspect([str(tmp_path / "ckpt"), "--html", str(out)])
    with pytest.raises(InputError, match="not in the tokenizer"):
        inspect([str(tmp_path / "ckpt"), "--input", "xyz!", "--html", str(out)])
    with pytest.raises(InputError, match="--src"):
        inspect([str(tmp_path / "ckpt"), "--input", "ab", "--src", "ab", "--html", str(out)])


def test_inspect_takes_token_ids_for_models_without_a_tokenizer(tmp_path):
    model = make_model(arch="encoder-decoder")
    save_model(tmp_path / "ckpt", model)
    out = tmp_path / "r.html"
    assert inspect([str(tmp_path / "ckpt"), "--tokens", "1,2,3", "--src-tokens", "4,5,6,7", "--html", str(out)]) == 0
    assert "[4]" in out.read_text()  # tokens without text are shown by id


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install -y chromium)")
def test_the_report_renders_in_a_headless_browser(tmp_path):
    model = make_model()
    tokens = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 3, 4, 5]])
    report, _ = write_report(tmp_path / "report.html", model, tokens, tokenizer=CharTokenizer(CHARS))
    shot = tmp_path / "shot.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
             "--window-size=1100,2600", f"--screenshot={shot}", report.resolve().as_uri()],
            check=True, capture_output=True, timeout=120,
        )
    pixels = mpimg.imread(shot)[..., :3]  # [height, width, rgb] in [0, 1]
    assert pixels.shape[:2] == (2600, 1100)
    ink = (pixels < 0.9).any(-1).mean()  # share of pixels that are not (near) white
    colours = len(np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0))
    assert ink > 0.04, "the page rendered (almost) blank"
    assert colours > 200, "the inlined plots did not render (too few distinct colours)"
    Path(shot).unlink()


@pytest.fixture(scope="module")
def compiled_reverse(tmp_path_factory):
    from glassformer import rasp

    compiled = rasp.compile(rasp.library.reverse(), vocab="abc", max_len=5)
    return compiled, compiled.save(tmp_path_factory.mktemp("compiled") / "reverse")


def test_inspect_runs_a_compiled_program_as_sample_does_and_names_its_residual_stream(compiled_reverse, tmp_path, capsys):
    """The start token the compiled weights rely on is put in front (as sample and CompiledModel.run do), so the
    report's computation is the program's: the model's answer at positions 1..3 is the reversed input."""
    from glassformer.train.inputs import encode_input, open_model

    compiled, path = compiled_reverse
    out = tmp_path / "r.html"
    assert inspect([str(path), "--input", "abc", "--html", str(out)]) == 0
    printed = capsys.readouterr().out
    expected = compiled.encode("abc").tolist()  # [BOS, a, b, c]
    assert f"input ids: {' '.join(map(str, expected))}" in printed
    assert f"residual stream: {len(compiled.residual_labels)} named dimensions" in printed
    page = out.read_text()
    assert "Residual stream, by name" in page and "tokens=a" in page and "indices=0" in page
    checkpoint = open_model(path)
    ids = encode_input(checkpoint, "abc")
    assert ids[0].tolist() == expected
    logits = checkpoint.model(ids)[0, 1:]
    assert compiled.decode(logits) == ["c", "b", "a"]


def test_explain_and_diagram_of_a_compiled_program_show_its_names(compiled_reverse, tmp_path, capsys):
    from glassformer.explain import cli as explain_cli

    compiled, path = compiled_reverse
    parser = argparse.ArgumentParser()
    explain_cli.register(parser.add_subparsers(dest="command"))
    for argv in (["explain", str(path), "--input", "abc", "--max-cols", "30", "--out", str(tmp_path / "t.md")],
                 ["diagram", str(path), "--out", str(tmp_path / "d.svg")]):
        args = parser.parse_args(argv)
        assert args.func(args) == 0
    md = (tmp_path / "t.md").read_text()
    assert "| 0 ␂ |" in md or "0 ␂" in md  # the start token is position 0
    assert "tokens=a" in md and "indices=0" in md
    assert "named dimensions" in (tmp_path / "d.svg").read_text()
