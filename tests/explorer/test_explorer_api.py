"""The explorer's API as Python: every view equals what the library computes on its own, interventions do
what they say, bad requests are refused with a message naming the problem."""

import json

import pytest
import torch

from glassformer import lens
from glassformer.errors import GlassformerError
from glassformer.explorer import Explorer, RequestError, load_subject, subject_of
from glassformer.explorer.analysis import Intervention, forward

TEXT = "1 2 3 4 1 2 3"
IDS = [1, 2, 3, 4, 1, 2, 3]


def test_run_views_match_the_library(explorer, decoder):
    out = explorer.run({"text": TEXT, "layer": 1, "top_k": 3})
    tokens = torch.tensor([IDS])
    logits, cache = lens.run_with_cache(decoder, tokens)
    probs = logits[0].softmax(-1)
    assert [t["id"] for t in out["tokens"]] == IDS
    assert [p[0]["id"] for p in out["predictions"]] == probs.argmax(-1).tolist()
    assert out["predictions"][-1][0]["p"] == pytest.approx(float(probs[-1].max()), abs=1e-4)
    assert torch.allclose(torch.tensor(out["attention"]["heads"]), cache["blocks.1.attn.pattern"][0], atol=6e-4)
    scores = lens.detect_heads(decoder, tokens)
    for name, values in scores.items():
        got = torch.tensor([[float("nan") if v is None else v for v in row] for row in out["detectors"][name]])
        assert torch.allclose(got, values, atol=1e-3, equal_nan=True)
    top_p, top_id = lens.logit_lens(decoder, tokens).top_k(1)
    assert [[c["id"] for c in row] for row in out["lens"]["top"]] == top_id[:, 0, :, 0].tolist()
    dla = lens.direct_logit_attribution(decoder, cache, out["dla"]["token"]["id"], pos=-1)
    assert out["dla"]["total"] == pytest.approx(float(dla.total[0]), abs=1e-3)
    assert sum(i["value"] for i in out["dla"]["items"]) == pytest.approx(float(dla.total[0]), abs=1e-2)
    json.dumps(out)  # all of it travels as JSON


def test_a_run_sends_only_the_views_asked_for(explorer):
    out = explorer.run({"text": TEXT, "views": ["lens"]})
    assert "lens" in out and not {"attention", "detectors", "dla"} & set(out)
    assert out["predictions"] == explorer.run({"text": TEXT})["predictions"]
    assert set(explorer.run({"text": TEXT, "views": []})) == {"tokens", "predictions", "output", "interventions"}


def test_ablation_is_the_lens_ablation(explorer, decoder):
    out = explorer.run({"text": TEXT, "ablate": [{"layer": 1, "head": 2}, {"layer": 0, "mlp": True}]})
    logits = lens.run_ablated(decoder, torch.tensor([IDS]), heads=[(1, 2)], mlps=[0])
    assert [p[0]["id"] for p in out["predictions"]] == logits[0].argmax(-1).tolist()
    assert out["predictions"][0][0]["p"] == pytest.approx(float(logits[0, 0].softmax(-1).max()), abs=1e-4)
    base = explorer.run({"text": TEXT})
    assert out["baseline"]["predictions"] == base["predictions"]
    assert out["interventions"] == ["L1H2 (zero)", "L0 MLP (zero)"]
    assert any(abs(d) > 1e-4 for d in out["baseline"]["delta"])  # the output moved


def test_patching_copies_the_head_from_the_second_input(explorer):
    subject = explorer.subject
    other = [5, 6, 7, 8, 5, 6, 7]
    _, source = forward(subject, other)
    _, patched = forward(subject, IDS, interventions=[Intervention("head", 1, 3, "patch")], patch_tokens=other)
    _, clean = forward(subject, IDS)
    z = patched["blocks.1.attn.z"][0]  # [pos, heads, d_head]
    assert torch.allclose(z[:, 3], source["blocks.1.attn.z"][0, :, 3], atol=1e-6)  # (fused vs explicit attention path)
    assert torch.equal(z[:, :3], clean["blocks.1.attn.z"][0, :, :3])  # the other heads are untouched
    with pytest.raises(GlassformerError, match="same length"):
        explorer.run({"text": TEXT, "ablate": [{"layer": 1, "head": 3, "mode": "patch"}], "patch_text": "1 2"})


def test_mean_ablation_uses_a_fixed_reference(explorer):
    a = explorer.run({"text": TEXT, "ablate": [{"layer": 0, "head": 1, "mode": "mean"}]})
    b = explorer.run({"text": TEXT, "ablate": [{"layer": 0, "head": 1, "mode": "mean"}]})
    assert a["predictions"] == b["predictions"]
    assert a["predictions"] != explorer.run({"text": TEXT, "ablate": [{"layer": 0, "head": 1}]})["predictions"]


def test_sampling_steps_reuse_the_kv_cache(explorer, decoder):
    first = explorer.generate({"text": "1 2 3", "stream": "test-a", "temperature": 0})
    full = decoder(torch.tensor([[1, 2, 3]]))[0, -1]
    assert first["token"]["id"] == int(full.argmax()) and first["cache"] == {"reused": 0, "fed": 3, "held": 3}
    second = explorer.generate({"text": first["text"], "stream": "test-a", "temperature": 0})
    assert second["cache"] == {"reused": 3, "fed": 1, "held": 4}
    ids = [1, 2, 3, first["token"]["id"]]
    assert second["token"]["id"] == int(decoder(torch.tensor([ids]))[0, -1].argmax())  # cached = uncached
    other = explorer.generate({"text": "4 4", "stream": "test-a", "top_k": 1, "seed": 3})
    assert other["cache"]["reused"] == 0 and other["kept"] == 1  # a new prefix starts afresh; top-k 1 keeps one token
    a = explorer.generate({"text": "1 2", "stream": "test-b", "seed": 7, "top_p": 0.9})
    b = explorer.generate({"text": "1 2", "stream": "test-c", "seed": 7, "top_p": 0.9})
    assert a["token"] == b["token"]  # reproducible from the seed


def test_forward_path_steps_hold_the_models_numbers(explorer, decoder):
    outline = explorer.path({"text": TEXT})
    titles = [s["title"] for s in outline["sections"]]
    assert titles[0] == "Embedding" and titles[1:3] == ["Block 0", "Block 1"] and titles[-1] == "Output"
    block = outline["sections"][1]
    assert {s["head"] for s in block["steps"]} == {None, 0, 1, 2, 3}
    j = next(i for i, s in enumerate(block["steps"]) if s["title"].endswith("head 2: softmax, row by row"))
    step = explorer.step({"text": TEXT, "section": 1, "step": j})
    assert step["equations"][0].startswith("<math")
    pattern = next(t for t in step["tensors"] if t["name"].startswith("blocks.0.attn.pattern"))
    _, cache = lens.run_with_cache(decoder, torch.tensor([IDS]))
    expected = cache["blocks.0.attn.pattern"][0, 2]  # [q, k]
    row = pattern["rows"][-1]
    cols = [int(c.split()[0]) for c in pattern["col_labels"] if c is not None]  # "3 #4": key position 3 (elided ones are None)
    shown = [v for v in row["values"] if v is not None]
    assert len(shown) == len(cols) == 6 and None in pattern["col_labels"]  # 7 keys: 3 first, a gap, 3 last
    assert shown == pytest.approx([float(f"{float(expected[-1, j]):.4g}") for j in cols], abs=1e-6)
    with pytest.raises(GlassformerError, match="section 99"):
        explorer.step({"text": TEXT, "section": 99, "step": 0})


def test_compiled_program_and_its_residual_dimensions(compiled_reverse):
    ex = Explorer(subject_of(compiled_reverse))
    out = ex.run({"text": "abc"})
    assert out["output"] == ["c", "b", "a"] == compiled_reverse.run("abc")
    assert ex.run({"text": "abc", "ablate": [{"layer": 1, "head": 0}]})["output"] != ["c", "b", "a"]
    view = ex.program()
    assert "Aggregate(flip, tokens)" in view["code"]
    assert {"reverse", "flip", "length"} <= {n["name"] for n in view["nodes"]}
    sop = ex.sop({"text": "abc", "name": "reverse"})
    assert sop["rasp"] == [None, "c", "b", "a"]
    labels = [d["label"] for d in sop["dims"]]
    assert labels == ["reverse=a", "reverse=b", "reverse=c"]
    carried = [labels[max(range(3), key=lambda j: row[j])].split("=")[1] for row in sop["model"][1:]]
    assert carried == ["c", "b", "a"]  # the one-hot the model writes is the interpreter's value
    flip = ex.sop({"text": "abc", "name": "flip"})
    assert flip["kind"] == "selector" and flip["matrix"][0] == [False, False, True]
    with pytest.raises(GlassformerError, match="no s-op or selector named 'nope'"):
        ex.sop({"text": "abc", "name": "nope"})


def test_saved_compiled_program_is_rebuilt_from_the_library(compiled_reverse, tmp_path):
    compiled_reverse.save(tmp_path / "rev")
    ex = Explorer.open(tmp_path / "rev")
    assert ex.info()["model"]["kind"] == "compiled"
    assert ex.program()["code"] is not None
    assert ex.run({"text": "cab"})["output"] == ["b", "a", "c"]


def test_compare_marks_where_two_models_differ(decoder, tmp_path):
    from glassformer import ModelConfig

    torch.manual_seed(1)
    other = type(decoder)(decoder.config).eval()
    ex = Explorer(subject_of(decoder, name="A"), subject_of(other, name="B"))
    out = ex.run({"text": TEXT, "compare": True})
    theirs = other(torch.tensor([IDS]))[0].argmax(-1).tolist()
    assert [p[0]["id"] for p in out["compare"]["predictions"]] == theirs
    mine = [p[0]["id"] for p in out["predictions"]]
    assert out["compare"]["diff"]["top1_differs"] == [a != b for a, b in zip(mine, theirs)]
    assert len(out["compare"]["diff"]["attention_diff"]) == 4 and max(out["compare"]["diff"]["attention_diff"]) > 0
    same = Explorer(subject_of(decoder), subject_of(decoder)).run({"text": TEXT, "compare": True})
    assert same["compare"]["diff"]["attention_diff"] == [0.0] * 4
    with pytest.raises(RequestError, match="--compare"):
        Explorer(subject_of(decoder)).run({"text": TEXT, "compare": True})
    ModelConfig  # noqa: B018 (imported for the config file test below)


def test_load_subject_reads_configs_checkpoints_and_hf_folders(tmp_path, decoder):
    from glassformer.train.checkpoint import save_model

    (tmp_path / "cfg.json").write_text(json.dumps(decoder.config.to_dict()))
    assert load_subject(tmp_path / "cfg.json").kind == "random"
    save_model(tmp_path / "ckpt", decoder)
    s = load_subject(tmp_path / "ckpt")
    assert s.kind == "trained" and torch.equal(s.model.blocks[0].attn.W_Q, decoder.blocks[0].attn.W_Q)
    transformers = pytest.importorskip("transformers")
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=20, n_positions=16))
    hf.save_pretrained(tmp_path / "hf")
    s = load_subject(tmp_path / "hf")
    assert s.kind == "imported"
    out = Explorer(s).run({"text": "3 1 4"})
    with torch.no_grad():
        expected = hf(torch.tensor([[3, 1, 4]])).logits[0].argmax(-1).tolist()
    assert [p[0]["id"] for p in out["predictions"]] == expected
    with pytest.raises(GlassformerError, match="does not exist"):
        load_subject(tmp_path / "missing")


@pytest.mark.parametrize("body, message", [
    ({"text": "1 2 x"}, "'x' is not a token id"),
    ({"text": "1 99"}, "token id 99 is out of range"),
    ({"text": " ".join(["1"] * 17)}, "17 tokens long; this model's context holds 16"),
    ({"text": ""}, "empty"),
    ({"text": "1", "colour": "red"}, "unknown field"),
    ({"text": 3}, "'text' must be str"),
    ({"text": "1", "layer": True}, "'layer' must be int"),
    ({"text": "1", "layer": 7}, "layer 7 does not exist"),
    ({"text": "1", "top_k": 0}, "top_k must be in 1..50"),
    ({"text": "1", "ablate": [{"layer": 0}]}, "either a head"),
    ({"text": "1", "ablate": [{"layer": 0, "head": 9}]}, "head 9 does not exist"),
    ({"text": "1", "ablate": [{"layer": 0, "head": 1, "mode": "melt"}]}, "mode must be one of"),
    ({"text": "1", "ablate": [{"layer": 0, "head": 1, "mode": "patch"}]}, "second input"),
    ({"text": "1 2", "dla_pos": 5}, "attribution position 5"),
    ({"text": "1 2", "dla_token": 10}, "attribution token 10"),
    ({"text": "1", "views": ["lens", "colours"]}, "unknown view"),
    ({"text": "1", "views": [3]}, "views must be a list of names"),
    ({}, "'text' is required"),
    ([1, 2], "must be a JSON object"),
])
def test_bad_requests_are_refused_by_name(explorer, body, message):
    with pytest.raises(GlassformerError, match=message):
        explorer.run(body)


def test_bad_generate_requests(explorer):
    for body, message in [({"text": "1", "temperature": -1}, "temperature"), ({"text": "1", "stream": "../x"}, "stream"),
                          ({"text": "1", "top_p": 1.5}, "top_p"), ({"text": "1", "top_k": 0}, "top_k"),
                          ({"text": " ".join(["1"] * 16)}, "context is full")]:
        with pytest.raises(GlassformerError, match=message):
            explorer.generate(body)
    with pytest.raises(GlassformerError, match="needs a decoder"):
        Explorer(subject_of(__import__("glassformer").rasp.compile(
            __import__("glassformer").rasp.library.get("length"), vocab="ab", max_len=3))).generate({"text": "ab"})


@pytest.mark.parametrize("options", [
    {"arch": "encoder-decoder"}, {"arch": "encoder"}, {"arch": "decoder", "norm_position": "post"},
    {"arch": "decoder", "attention": "linear"}, {"arch": "decoder", "n_kv_heads": 2, "positional": "rope", "act": "swiglu"},
], ids=["encoder-decoder", "encoder", "post-ln", "linear", "gqa-rope-swiglu"])
def test_every_architecture_is_explorable(options):
    from glassformer import ModelConfig, Transformer

    model = Transformer(ModelConfig(d_model=16, n_layers=2, n_heads=4, d_vocab=12, n_ctx=16, **options)).eval()
    ex = Explorer(subject_of(model))
    body = {"text": "1 2 3 4", **({"src": "5 6 7"} if options["arch"] == "encoder-decoder" else {})}
    out = ex.run({**body, "ablate": [{"layer": 1, "head": 1, "mode": "mean"}]})
    assert len(out["predictions"]) == 4 and len(out["lens"]["top"]) == 3
    assert torch.allclose(torch.tensor(out["attention"]["heads"]).sum(-1), torch.ones(4, 4), atol=3e-3)  # 4 keys rounded to 0.001
    if options.get("norm_position") == "post":
        assert "pre-norm" in out["dla"]["error"]  # said, not crashed
    if options["arch"] == "encoder-decoder":
        with pytest.raises(GlassformerError, match="source input"):
            ex.run({"text": "1 2"})
    assert ex.path(body)["sections"]  # the explain trace covers every variant, linear attention included


def test_trained_models_show_the_decompiled_program_when_the_decompiler_exists(decoder, monkeypatch):
    """The decompiler is another subsystem (``glassformer.rasp.decompile(model, task)``): its import is guarded."""
    import glassformer.rasp
    from glassformer.explorer.session import Subject

    subject = Subject("m", "trained", decoder, task={"name": "reverse", "options": {"length": 3}})
    monkeypatch.delattr(glassformer.rasp, "decompile", raising=False)
    if importlib_util_find("glassformer.rasp.decompile") is None:
        view = Explorer(subject).program()
        assert not view["available"] and "not part of this installation" in view["note"]
    calls = []

    class Result:
        source, match_sequence, match_position = "reverse = Aggregate(flip, tokens)", 0.75, 0.9

    def fake(model, task):
        calls.append((model, task.name if hasattr(task, "name") else task))
        return Result()

    monkeypatch.setattr(glassformer.rasp, "decompile", fake, raising=False)
    ex = Explorer(subject)
    assert ex.program()["available"] and ex.program()["code"] is None
    out = ex.decompile({})
    assert out["code"] == Result.source and out["match_sequence"] == 0.75 and len(calls) == 1 and calls[0][0] is decoder
    assert ex.decompile({})["code"] == Result.source and len(calls) == 1  # computed once
    assert ex.program()["code"] == Result.source
    no_task = Explorer(subject_of(decoder))
    assert "records none" in no_task.program()["note"]
    with pytest.raises(GlassformerError, match="records none"):
        no_task.decompile({})


def importlib_util_find(name):
    import importlib.util

    try:
        return importlib.util.find_spec(name)
    except ModuleNotFoundError:
        return None
