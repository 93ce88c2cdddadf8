"""T5 (v1.0: ReLU MLP, tied head rescaled by d_model^-1/2; v1.1 / Flan: gated-GELU, own head) imports onto the
encoder-decoder with T5 relative buckets, unscaled attention and RMS norms: logits within 1e-4 of HF on random
weights (source padding, more decoder than encoder blocks), greedy decoding token for token as HF's
``generate``; a folder with a T5 tokenizer (a unigram model trained here) imports with it, and sample, inspect,
explain, diagram and the explorer read the run with string prompts."""

import json

import pytest
import torch
from hf_models import ATOL, VOCAB, randomize

import glassformer
from glassformer.cli import main
from glassformer.interop import from_hf

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

SENTENCES = ["the cat sat on the mat", "translate English to German: the house is small", "a dog ran in the park",
             "summarize: glass is clear and hard", "the quick brown fox jumps over the lazy dog"]


def t5(feed_forward_proj="relu", tie=True, seed=0):
    config = transformers.T5Config(
        vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_decoder_layers=3, num_heads=4,
        relative_attention_num_buckets=8, relative_attention_max_distance=20, feed_forward_proj=feed_forward_proj,
        tie_word_embeddings=tie, decoder_start_token_id=0,
    )
    hf = randomize(transformers.T5ForConditionalGeneration(config), seed)
    with torch.no_grad():  # a tied head reads d_model^-1/2 * Norm(x): larger embeddings keep its logits far from flat
        hf.shared.weight.mul_(4 if tie else 1)
    return hf


def t5_tokenizer():
    """A T5 tokenizer (SentencePiece-style unigram: Metaspace, </s> appended) trained on a few sentences."""
    from tokenizers import decoders, models, pre_tokenizers, processors, trainers

    tok = tokenizers.Tokenizer(models.Unigram())
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=80, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>", show_progress=False)
    tok.train_from_iterator(SENTENCES * 10, trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return transformers.T5TokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>", extra_ids=0)


def ids(seed, batch, pos):
    return torch.randint(2, VOCAB, (batch, pos), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("proj, tie", [("relu", True), ("gated-gelu", False), ("gated-gelu", True)])
def test_t5_logits_match_hf(proj, tie, tmp_path):
    hf = t5(proj, tie)
    model = from_hf(hf)
    c = model.config
    assert (c.arch, c.positional, c.norm, c.attn_scale, c.bias, c.n_layers, c.n_decoder_layers) == (
        "encoder-decoder", "t5", "rmsnorm", 1.0, False, 2, 3)
    assert c.act == {"relu": "relu", "gated-gelu": "geglu_tanh"}[proj]
    src, tgt = ids(1, 2, 30), ids(2, 2, 25)  # longer than max_distance: every bucket is used
    mask = torch.ones_like(src)
    mask[1, 21:] = 0  # the second source is padded
    with torch.no_grad():
        theirs = hf(input_ids=src, attention_mask=mask, decoder_input_ids=tgt).logits
        ours = model(tgt, src=src, src_attention_mask=mask)
    assert theirs.std() > 0.3
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=0)
    if proj == "gated-gelu" and not tie:  # the folder save_pretrained writes reads the same
        hf.save_pretrained(tmp_path / "t5")
        with torch.no_grad():
            torch.testing.assert_close(from_hf(tmp_path / "t5")(tgt, src=src, src_attention_mask=mask), theirs, atol=ATOL, rtol=0)


def test_t5_greedy_decoding_matches_hf_generate():
    hf = t5("gated-gelu", tie=False, seed=3)
    model = from_hf(hf)
    src = ids(4, 2, 12)
    theirs = hf.generate(src, max_new_tokens=10, do_sample=False, num_beams=1, min_new_tokens=10, use_cache=False)  # [2, 11]; HF's cache fails with more decoder than encoder blocks
    start = torch.zeros(2, 1, dtype=torch.long)
    for use_cache in (True, False):
        ours = model.generate(start, 10, src=src, greedy=True, use_cache=use_cache)
        assert ours.tolist() == theirs.tolist()


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_import_t5_folder_and_use_it_with_strings(capsys, tmp_path):
    hf = t5("gated-gelu", tie=False, seed=5)
    folder = tmp_path / "hf-t5"
    hf.save_pretrained(folder)
    hf_tok = t5_tokenizer()
    hf_tok.save_pretrained(folder)
    assert "imported t5" in run(capsys, "import", folder, "--out", tmp_path / "run")
    assert json.loads((tmp_path / "run" / "extra.json").read_text())["seq2seq"] == {"decoder_start_token_id": 0, "eos_token_id": 1}
    model, tokenizer = glassformer.load(tmp_path / "run")
    source, target = "the cat sat on the mat", "the dog"
    src = model.to_tokens(source)
    assert src[0].tolist() == hf_tok(source).input_ids and src[0, -1] == 1  # </s> appended, as HF's tokenizer does
    dec = torch.tensor([[0, *hf_tok(target).input_ids[:-1]]])  # HF's shifted-right decoder input
    with torch.no_grad():
        logits = hf(input_ids=src, decoder_input_ids=dec).logits
        torch.testing.assert_close(model(dec, src=src), logits, atol=ATOL, rtol=0)

    # sample: the prompt is the source; greedy decoding from <pad> to </s> is HF's generate
    expected = hf.generate(src, max_new_tokens=6, do_sample=False, num_beams=1, use_cache=False)[0, 1:].tolist()
    expected = expected[: expected.index(1)] if 1 in expected else expected
    out = run(capsys, "sample", tmp_path / "run", "--prompt", source, "--greedy", "--max-new-tokens", 6)
    assert out.strip() == f"{source} -> {tokenizer.decode(expected)}"
    assert run(capsys, "sample", tmp_path / "run", "--prompt", source, "--beam", 1, "--max-new-tokens", 6) == out
    beam = hf.generate(src, max_new_tokens=6, do_sample=False, num_beams=3, use_cache=False)[0, 1:].tolist()
    beam = beam[: beam.index(1)] if 1 in beam else beam
    out = run(capsys, "sample", tmp_path / "run", "--prompt", source, "--beam", 3, "--max-new-tokens", 6)
    assert out.strip() == f"{source} -> {tokenizer.decode(beam)}"  # HF's beam search, the same hypothesis

    # inspect / explain read --src as the source and --input as the decoder's text (the start token put in front)
    out = run(capsys, "inspect", tmp_path / "run", "--src", source, "--input", target, "--html", tmp_path / "report.html")
    assert f"input ids: {' '.join(map(str, dec[0].tolist()))}" in out
    best = tokenizer.decode([int(logits[0, -1].argmax())])
    assert f"prediction: {best!r}" in out
    run(capsys, "explain", tmp_path / "run", "--src", source, "--input", target, "--out", tmp_path / "forward.html")
    run(capsys, "diagram", tmp_path / "run", "--out", tmp_path / "model.svg")
    for name in ("report.html", "forward.html", "model.svg"):
        assert (tmp_path / name).stat().st_size > 1000
    forward = (tmp_path / "forward.html").read_text()
    assert "T5 relative bias" in forward and "Cross-attention" in forward

    # the explorer (its API, as the page calls it) predicts what HF does
    from glassformer.explorer import Explorer, load_subject

    explorer = Explorer(load_subject(tmp_path / "run"))
    view = explorer.run({"text": target, "src": source, "top_k": 1})
    assert [t["id"] for t in view["tokens"]] == dec[0].tolist()
    assert [p[0]["id"] for p in view["predictions"]] == logits[0].argmax(-1).tolist()
    assert explorer.path({"text": target, "src": source})["sections"]
