"""`glassformer import MODEL_DIR --out RUN` end to end: random-weight Hugging Face folders (with a tokenizer)
built here become checkpoints whose logits equal the source's within 1e-4, whose models carry the tokenizer,
and which sample / inspect / explain / diagram / fill read with string prompts; Llama export round-trips;
an imported model fine-tunes with the core trainer."""

import json

import pytest
import torch
from hf_models import ATOL, VOCAB, bert, gpt2, llama

import glassformer
from glassformer.cli import main
from glassformer.errors import ConfigError
from glassformer.interop import to_hf_llama
from glassformer.model import ModelConfig, Transformer
from glassformer.train.checkpoint import load_checkpoint

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

CHARS = " abcdefghijklmnopqrstuvwxyz.,!?"


def char_tokenizer(specials=()):
    """A Hugging Face fast tokenizer with one token per character (a BPE without merges), ids < VOCAB."""
    vocab = {tok: i for i, tok in enumerate([*specials, *CHARS])}
    tok = tokenizers.Tokenizer(tokenizers.models.BPE(vocab=vocab, merges=[]))
    tok.decoder = tokenizers.decoders.Fuse()  # decoding concatenates the characters
    if specials:
        tok.add_special_tokens(list(specials))
    return tok


def save_folder(path, hf_model, tok, **special):
    hf_model.save_pretrained(path)
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, **special).save_pretrained(path)
    return path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_import_gpt2_folder_and_use_it_with_strings(capsys, tmp_path):
    hf = gpt2()
    folder = save_folder(tmp_path / "hf-gpt2", hf, char_tokenizer())
    out = run(capsys, "import", folder, "--out", tmp_path / "run")
    assert "imported gpt2" in out
    model, tokenizer = glassformer.load(tmp_path / "run")
    assert model.tokenizer is tokenizer and tokenizer.vocab_size == VOCAB  # padded to the model's vocabulary
    text = "hello world, this is glass."
    hf_tok = transformers.AutoTokenizer.from_pretrained(folder)
    tokens = model.to_tokens(text)  # [1, pos]
    assert tokens[0].tolist() == hf_tok(text)["input_ids"]
    assert model.to_str_tokens(text) == list(text) and model.to_string(tokens[0]) == text
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), hf(tokens).logits, atol=ATOL, rtol=0)
    assert glassformer.from_hf(folder).tokenizer is not None  # from_hf of a folder carries it too

    out = run(capsys, "sample", tmp_path / "run", "--prompt", "hello", "--greedy", "--max-new-tokens", 4)
    expected = hf.generate(tokens[:, :5], max_new_tokens=4, do_sample=False, pad_token_id=0)
    assert out.strip() == tokenizer.decode(expected[0])  # the same tokens as HF greedy decoding
    run(capsys, "inspect", tmp_path / "run", "--input", "hello world", "--html", tmp_path / "report.html")
    run(capsys, "explain", tmp_path / "run", "--input", "hello", "--out", tmp_path / "forward.html")
    run(capsys, "diagram", tmp_path / "run", "--out", tmp_path / "model.svg")
    for name in ("report.html", "forward.html", "model.svg"):
        assert (tmp_path / name).stat().st_size > 1000


def test_import_bert_folder_and_fill_a_blank(capsys, tmp_path):
    hf = bert()
    tok = char_tokenizer(specials=("[PAD]", "[CLS]", "[SEP]", "[MASK]"))
    tok.post_processor = tokenizers.processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 1), ("[SEP]", 2)]
    )
    folder = save_folder(tmp_path / "hf-bert", hf, tok, mask_token="[MASK]", cls_token="[CLS]", sep_token="[SEP]")
    run(capsys, "import", folder, "--out", tmp_path / "run")
    model, tokenizer = glassformer.load(tmp_path / "run")
    tokens = model.to_tokens("to be or [MASK] to be")
    assert tokens[0, 0] == 1 and tokens[0, -1] == 2 and (tokens == 3).sum() == 1  # [CLS] ... [MASK] ... [SEP]
    with torch.no_grad():
        logits = hf(tokens).logits
        torch.testing.assert_close(model(tokens), logits, atol=ATOL, rtol=0)
    out = run(capsys, "fill", tmp_path / "run", "--input", "to be or [MASK] to be", "--top-k", 1)
    best = tokenizer.decode([int(logits[0, (tokens[0] == 3).nonzero()[0, 0]].argmax())])
    assert f"[MASK] 1: {best!r}" in out


def test_llama_export_round_trips_through_transformers(capsys, tmp_path):
    folder = save_folder(tmp_path / "hf-llama", llama(), char_tokenizer())
    run(capsys, "import", folder, "--out", tmp_path / "run")
    run(capsys, "export", tmp_path / "run", "--out", tmp_path / "back")
    model, _ = glassformer.load(tmp_path / "run")
    back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "back").eval()
    assert (tmp_path / "back" / "tokenizer.json").is_file()
    tokens = model.to_tokens("the quick brown fox")
    with torch.no_grad():
        torch.testing.assert_close(back(tokens).logits, model(tokens), atol=ATOL, rtol=0)

    # a model trained here (GQA, tied embeddings) exports too; one Llama cannot express is refused by name
    config = ModelConfig(arch="decoder", d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_vocab=50, n_ctx=16,
                         norm="rmsnorm", positional="rope", act="swiglu", bias=False, tie_embeddings=True)
    ours = Transformer(config).eval()
    x = torch.randint(0, 50, (2, 10))
    with torch.no_grad():
        torch.testing.assert_close(to_hf_llama(ours)(x).logits, ours(x), atol=ATOL, rtol=0)
    with pytest.raises(ConfigError, match="norm='layernorm'.*positional='learned'"):
        to_hf_llama(Transformer(ModelConfig(arch="decoder", d_model=32, n_layers=1, n_heads=4, d_vocab=50, n_ctx=16, bias=False, act="swiglu")))


def test_fine_tune_an_imported_model(capsys, tmp_path, one_thread, seed, record_property):
    """Measured: 30 steps at lr 3e-3 on a repeated sentence took the held-out loss of the random-weight import
    from 5.10 to 1.32-1.37 over training seeds 0-4, the same to 3 decimals with 1 and 2 threads; asserted: below 2.5."""
    folder = save_folder(tmp_path / "hf-gpt2", gpt2(), char_tokenizer())
    run(capsys, "import", folder, "--out", tmp_path / "run")
    (tmp_path / "text.txt").write_text("the cat sat on the mat. " * 400)
    run(capsys, "train", "--text", tmp_path / "text.txt", "--init", tmp_path / "run", "--block-size", 16, "--steps", 30,
        "--lr", "3e-3", "--batch-size", 16, "--eval-every", 0, "--eval-batches", 2, "--warmup-steps", 5, "--quiet",
        "--seed", seed, "--out", tmp_path / "tuned")
    summary = json.loads((tmp_path / "tuned" / "summary.json").read_text())
    tuned = load_checkpoint(tmp_path / "tuned")
    assert tuned.config == load_checkpoint(tmp_path / "run").config and tuned.tokenizer.vocab_size == VOCAB
    record_property("loss", summary["loss"])
    assert summary["loss"] < 2.5
