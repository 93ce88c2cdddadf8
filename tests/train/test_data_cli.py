"""The data paths from the command line: train on pairs / labels / masked text / images / a prepared folder,
with --tokenizer, then sample, fill and eval; summary.json keys as scripts rely on them; one-line errors.
(These runs are a few steps: that they learn is tests/train/test_data_learning.py's job.)"""

import json
import random

import pytest

import glassformer
from glassformer.cli import main
from glassformer.train.checkpoint import load_checkpoint
from glassformer.train.tokenizers import BPETokenizer, CharTokenizer

SMALL = ["--d-model", "32", "--n-layers", "1", "--n-heads", "2", "--batch-size", "8", "--quiet", "--eval-every", "0", "--eval-batches", "1"]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def files(tmp_path):
    rng = random.Random(0)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"source": s, "target": s[::-1]}) + "\n"
                             for s in ("".join(rng.choice("abc") for _ in range(rng.randint(2, 5))) for _ in range(40))))
    labels = tmp_path / "labels.csv"
    labels.write_text("text,label\n" + "".join(f"{'x' * rng.randint(1, 6)}{c},{c}\n" for c in rng.choices("pq", k=40)))
    text = tmp_path / "text.txt"
    text.write_text(" ".join(rng.choice(["to", "be", "or", "not"]) for _ in range(3000)))
    return pairs, labels, text


def test_pairs_labels_and_masked_text_from_the_cli(capsys, tmp_path, files, one_thread):
    pairs, labels, text = files
    code, out, _ = run(capsys, "train", "--pairs", pairs, "--steps", 3, "--out", tmp_path / "p", *SMALL)
    assert code == 0 and "held-out decoding: greedy exact match" in out
    summary = json.loads((tmp_path / "p" / "summary.json").read_text())
    assert {"loss", "sequence_accuracy", "exact_match", "greedy_exact_match", "beam_exact_match"} <= set(summary)
    code, out, _ = run(capsys, "sample", tmp_path / "p", "--prompt", "abc", "--beam", 2)
    assert code == 0 and out.startswith("abc -> ") and "[EOS]" not in out  # decoding stops at [EOS]

    code, out, _ = run(capsys, "train", "--labels", labels, "--steps", 3, "--out", tmp_path / "l", *SMALL)
    summary = json.loads((tmp_path / "l" / "summary.json").read_text())
    assert code == 0 and {"loss", "accuracy", "confusion_matrix", "classes"} <= set(summary)
    assert summary["classes"] == ["p", "q"] and sum(map(sum, summary["confusion_matrix"])) == 4  # 10% of 40 held out
    assert (tmp_path / "l" / "confusion.png").stat().st_size > 1000
    code, out, _ = run(capsys, "sample", tmp_path / "l", "--prompt", "xxp")
    assert code == 0 and out.count("class ") == 2

    code, out, _ = run(capsys, "train", "--text", text, "--arch", "encoder", "--block-size", 16, "--steps", 3, "--out", tmp_path / "m", *SMALL)
    summary = json.loads((tmp_path / "m" / "summary.json").read_text())
    assert code == 0 and {"loss", "masked_accuracy"} <= set(summary)
    code, out, _ = run(capsys, "fill", tmp_path / "m", "--input", "to be or [MASK] to be", "--top-k", 2)
    assert code == 0 and out.splitlines()[0].startswith("to be or ") and "[MASK]" not in out.splitlines()[0]
    code, out, _ = run(capsys, "eval", tmp_path / "m", "--batches", 1, "--batch-size", 4, "--json")
    assert code == 0 and "masked_accuracy" in json.loads(out)
    model, tokenizer = glassformer.load(tmp_path / "m")
    assert model.tokenizer is tokenizer and tokenizer.specials == ("[MASK]",)


def test_tokenizer_flag_prepare_and_images(capsys, tmp_path, files, one_thread):
    pairs, labels, text = files
    code, _, _ = run(capsys, "train", "--text", text, "--tokenizer", "bpe:300", "--block-size", 16, "--steps", 2, "--out", tmp_path / "b", *SMALL)
    model, tokenizer = glassformer.load(tmp_path / "b")
    assert code == 0 and isinstance(tokenizer, BPETokenizer) and model.config.d_vocab == tokenizer.vocab_size
    assert model.to_str_tokens("to be or") == [tokenizer.decode([i]) for i in tokenizer.encode("to be or")]
    code, out, _ = run(capsys, "sample", tmp_path / "b", "--prompt", "to be", "--max-new-tokens", 3)
    assert code == 0 and out.startswith("to be")
    code, _, _ = run(capsys, "train", "--labels", labels, "--tokenizer", tmp_path / "b" / "checkpoint", "--steps", 2, "--out", tmp_path / "lb", *SMALL)
    assert code == 0 and load_checkpoint(tmp_path / "lb").tokenizer.token_to_id("[CLS]") is not None

    code, out, _ = run(capsys, "prepare", text, "--tokenizer", "char", "--out", tmp_path / "prep", "--quiet")
    assert code == 0 and "tokens (uint16" in out
    code, _, _ = run(capsys, "train", "--text", tmp_path / "prep", "--block-size", 16, "--steps", 2, "--out", tmp_path / "pt", *SMALL)
    assert code == 0 and load_checkpoint(tmp_path / "pt").tokenizer == CharTokenizer(sorted(set(text.read_text())))

    pytest.importorskip("sklearn")
    code, _, _ = run(capsys, "train", "--images", "digits", "--steps", 2, "--out", tmp_path / "d", *SMALL)
    assert code == 0 and load_checkpoint(tmp_path / "d").config.input == "patches"
    from PIL import Image

    for label, value in (("dark", 20), ("light", 230)):
        (tmp_path / "img" / label).mkdir(parents=True)
        for i in range(5):
            Image.new("L", (12, 12), value + i).save(tmp_path / "img" / label / f"{i}.png")
    code, _, _ = run(capsys, "train", "--images", tmp_path / "img", "--option", "image_size=8", "--option", "patch_size=4",
                     "--steps", 2, "--out", tmp_path / "i", *SMALL)
    assert code == 0 and json.loads((tmp_path / "i" / "summary.json").read_text())["classes"] == ["dark", "light"]


def test_bad_data_flags_get_one_line_errors(capsys, tmp_path, files):
    pairs, labels, text = files
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "bin.txt").write_bytes(b"\x00\xff" * 20)
    cases = [
        (["train", "--text", tmp_path / "empty.txt"], "is empty"),
        (["train", "--text", tmp_path / "bin.txt"], "binary file"),
        (["train", "--text", text, "--tokenizer", "sentencepiece"], "unknown tokenizer 'sentencepiece'"),
        (["train", "--pairs", pairs, "--block-size", 3, "--too-long", "refuse"], "longer than 3 tokens"),
        (["train", "--images", tmp_path], "one sub-folder per class"),
        (["train", "--labels", pairs], "line 1: no 'text' key"),
        (["fill", tmp_path / "nowhere", "--input", "x"], "checkpoint folder not found"),
        (["prepare", tmp_path / "missing.txt", "--out", tmp_path / "o"], "no such text file"),
    ]
    for argv, message in cases:
        extra = ["--out", tmp_path / "x"] if argv[0] == "train" else []
        code, _, err = run(capsys, *argv, *extra)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (argv, err)
