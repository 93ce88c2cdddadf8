"""CompiledModel: an ordinary Transformer plus encoders -- running, describing, saving and loading."""

import json

import pytest
import torch

import glassformer
from glassformer import ModelConfig, Transformer, rasp
from glassformer.errors import InputError
from glassformer.rasp import library
from glassformer.rasp.compiler import CompiledModel


@pytest.fixture(scope="module")
def reverse():
    return rasp.compile(library.reverse(), vocab="abcd", max_len=6)


def test_the_model_is_an_ordinary_transformer(reverse):
    model, cfg = reverse.model, reverse.model.config
    assert type(model) is Transformer and isinstance(cfg, ModelConfig)
    assert (cfg.arch, cfg.norm, cfg.positional, cfg.act, cfg.tie_embeddings, cfg.bias) == (
        "encoder", "none", "learned", "relu", False, True)
    assert cfg.n_layers == 2 and cfg.d_model == len(reverse.residual_labels)
    rebuilt = Transformer(ModelConfig.from_dict(cfg.to_dict()))
    rebuilt.load_state_dict(model.state_dict())
    ids = reverse.encode("abcd")[None]
    assert torch.equal(rebuilt(ids), model(ids))


def test_summary_and_labels(reverse):
    s = reverse.summary()
    assert (s["layers"], s["heads"], s["d_model"]) == (2, 2, reverse.model.config.d_model)
    assert s["params"] == sum(p.numel() for p in reverse.model.parameters())
    assert s["heads_per_layer"] == [1, 1] and s["dtype"] == "float32"
    assert reverse.residual_labels[:2] == ["bos", "indices=0"] and "tokens=c" in reverse.residual_labels
    text = reverse.describe()
    assert "layer 0:" in text and "opp_idx: lookup over (1/(length+1), indices), fusing length" in text


def test_run_and_batch_agree(reverse):
    cases = ["a", "ab", "dcba", "abcdab", "bbb"]
    assert reverse.run_batch(cases) == [reverse.run(c) for c in cases] == [list(reversed(c)) for c in cases]
    assert reverse.run("") == [] and reverse.run_batch([]) == []


def test_bad_inputs_get_clear_errors(reverse):
    with pytest.raises(InputError, match="token 'z' at position 1 is not in the compiled vocabulary"):
        reverse.run("az")
    with pytest.raises(InputError, match="7 tokens but the program was compiled for max_len = 6"):
        reverse.run("abcdabc")


def test_the_lens_sees_the_algorithm(reverse):
    """The flip head's attention pattern is the anti-diagonal: what the program says it does."""
    ids = reverse.encode("abcd")[None]  # [BOS, a, b, c, d]
    _, cache = reverse.model.run_with_cache(ids)
    pattern = cache["blocks.1.attn.pattern"][0, 0]  # [q_pos, k_pos]
    for q in range(1, 5):
        assert pattern[q, 5 - q] > 0.999  # query position q reads key position n + 1 - q
    width = cache["blocks.0.attn.pattern"][0, 0]
    assert torch.allclose(width[1:], torch.full((4, 5), 0.2), atol=1e-4)  # BOS and 4 tokens, evenly


def test_save_and_load(tmp_path, reverse):
    out = reverse.save(tmp_path / "reverse")
    assert {"config.json", "model.safetensors", "extra.json", "checkpoint.json", "tokenizer.json"} <= {
        p.name for p in out.iterdir()}
    extra = json.loads((out / "extra.json").read_text())["rasp"]
    assert extra["vocab"] == list("abcd") and extra["residual_labels"] == reverse.residual_labels
    model, tokenizer = glassformer.load(out)
    assert type(model) is Transformer and tokenizer.decode([2, 3]) == "ab"
    again = CompiledModel.load(out)
    assert again.run("dcab") == reverse.run("dcab") == list("bacd")
    assert again.summary()["params"] == reverse.summary()["params"]


def test_values_of_every_kind_survive_saving(tmp_path):
    program = library.nary_sequence_map(lambda a, b: (a, b > 1), rasp.tokens, rasp.indices)
    compiled = rasp.compile(program, vocab=[0, 1, 2], max_len=4)
    compiled.save(tmp_path / "pairs")
    again = CompiledModel.load(tmp_path / "pairs")
    assert again.run([2, 0, 1]) == [(2, False), (0, False), (1, True)] == compiled.run([2, 0, 1])
    frac = rasp.compile(library.frac_prevs(), vocab="xy", max_len=5)
    frac.save(tmp_path / "frac")
    assert CompiledModel.load(tmp_path / "frac").run("xyx") == [1.0, 0.5, 2 / 3]


def test_loading_a_checkpoint_without_a_program(tmp_path):
    from glassformer.train.checkpoint import save_model

    save_model(tmp_path / "plain", Transformer(ModelConfig(d_model=8, n_heads=2, d_vocab=5, n_ctx=4)))
    with pytest.raises(glassformer.CheckpointError, match="no compiled RASP program"):
        CompiledModel.load(tmp_path / "plain")


def test_sparse_checkpoints_store_only_the_non_zero_weights(tmp_path):
    """dyck2 at N = 16: the dense checkpoint is ~3.2 MB (~7 MB before layers were sized one by one), the sparse
    one ~84 KB, under 1/20 of it, and loads back to identical weights (and ground truth) and per-layer sizes."""
    compiled = rasp.compile(library.dyck2(), vocab="(){}", max_len=16)
    dense, sparse = compiled.save(tmp_path / "dense"), compiled.save(tmp_path / "sparse", sparse=True)
    size = lambda d: sum(f.stat().st_size for f in d.iterdir())  # noqa: E731
    nonzero = sum(int((p != 0).sum()) for p in compiled.model.parameters())
    assert size(sparse) < size(dense) / 20 and size(sparse) < 24 * nonzero + 100_000
    loaded = CompiledModel.load(sparse)
    assert loaded.model.config == compiled.model.config and compiled.model.config.per_layer
    for (name, a), b in zip(compiled.model.state_dict().items(), loaded.model.state_dict().values()):
        assert a.dtype == b.dtype and torch.equal(a, b), name
    assert loaded.run("({})") == [True] * 4 and loaded.components() == compiled.components()
    with pytest.raises(glassformer.errors.CheckpointError, match="model.safetensors is missing"):
        glassformer.load(sparse)  # the dense format is the one every command reads
