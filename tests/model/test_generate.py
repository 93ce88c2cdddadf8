import itertools

import pytest
import torch

from glassformer import InputError, ModelConfig, Transformer
from glassformer.model.generate import _Stepper, beam_search, filter_logits, generate, left_pad, next_token

V = 7


def make(arch="decoder", seed=0, **overrides):
    torch.manual_seed(seed)
    config = dict(arch=arch, d_model=32, n_layers=2, n_heads=4, d_vocab=V, n_ctx=16)
    return Transformer(ModelConfig(**{**config, **overrides})).eval()


PROMPT = torch.tensor([[1, 2, 3], [4, 5, 6]])
SRC = torch.tensor([[1, 2, 3, 4, 5], [6, 5, 4, 3, 2]])


@pytest.mark.parametrize("arch,positional", [("decoder", "learned"), ("decoder", "rope"), ("decoder", "alibi"), ("encoder-decoder", "sinusoidal")])
def test_cached_step_logits_equal_the_uncached_forward(arch, positional):
    model = make(arch, positional=positional)
    src = SRC if arch == "encoder-decoder" else None
    cached, uncached = _Stepper(model, True, src), _Stepper(model, False, src)
    sequence = PROMPT
    with torch.no_grad():
        for step in range(8):
            a, b = cached(sequence), uncached(sequence)  # [batch, vocab]
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
            if arch == "encoder-decoder":
                reference = model(sequence, src=src)[:, -1]
            else:
                reference = model(sequence)[:, -1]
            torch.testing.assert_close(a, reference, rtol=0, atol=1e-5)
            sequence = torch.cat([sequence, torch.randint(0, V, (2, 1))], dim=1)


@pytest.mark.parametrize("arch", ["decoder", "encoder-decoder"])
def test_greedy_is_the_argmax_of_the_full_forward_with_or_without_cache(arch):
    model = make(arch)
    src = SRC if arch == "encoder-decoder" else None
    out = generate(model, PROMPT, 6, src=src, greedy=True)
    assert torch.equal(out, generate(model, PROMPT, 6, src=src, greedy=True, use_cache=False))
    assert out.shape == (2, 9) and torch.equal(out[:, :3], PROMPT)
    sequence = PROMPT
    with torch.no_grad():
        for _ in range(6):
            logits = model(sequence, src=src) if src is not None else model(sequence)
            sequence = torch.cat([sequence, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, sequence)


def test_generation_past_the_context_slides_the_window():
    model = make(n_ctx=8)
    out = generate(model, PROMPT, 12, greedy=True)
    assert out.shape == (2, 15)
    assert torch.equal(out, generate(model, PROMPT, 12, greedy=True, use_cache=False))
    with torch.no_grad():
        expected_last = model(out[:, -9:-1])[:, -1].argmax(-1)  # the last token saw only the last n_ctx tokens
    assert torch.equal(out[:, -1], expected_last)


@pytest.mark.parametrize("variant", [dict(positional="rope"), dict(positional="alibi"), dict(positional="t5"),
                                     dict(positional="none"), dict(positional="rope", attention="sliding", window=5),
                                     dict(positional="rope", n_kv_heads=2, qk_norm=True)])
def test_past_the_context_relative_positions_decode_from_a_rolling_cache(variant):
    """Past n_ctx a model with relative positions keeps its cache, rolling: each new token attends to the last
    n_ctx keys as they were made. That is exactly the same weights with sliding-window attention of width n_ctx,
    run on the whole sequence at once, and it is not what re-running the window gives."""
    import dataclasses

    model = make(n_ctx=8, **variant)
    with torch.no_grad():
        for p in model.parameters():  # far from uniform, so that a wrong key or position would change the argmax
            p.normal_(std=0.3)
    out = generate(model, PROMPT, 17, greedy=True)  # 20 tokens: 12 past the context
    window = min(8, variant.get("window", 8))
    wide = Transformer(dataclasses.replace(model.config, n_ctx=64, attention="sliding", window=window)).eval()
    wide.load_state_dict(model.state_dict())
    with torch.no_grad():
        expected = wide(out[:, :-1]).argmax(-1)[:, PROMPT.shape[1] - 1 :]  # [batch, 17] the greedy choices
    assert torch.equal(out[:, PROMPT.shape[1] :], expected)
    if variant == dict(positional="rope"):  # (here, not for every variant, the difference shows in the argmax)
        assert not torch.equal(out, generate(model, PROMPT, 17, greedy=True, use_cache=False))  # re-running differs
    long = generate(model, out[:, :12], 6, greedy=True)  # a prompt longer than the context: its last n_ctx tokens
    with torch.no_grad():                                 # fill the cache, then it rolls
        expected = wide(long[:, 4:-1]).argmax(-1)[:, 7:]  # [batch, 6]
    assert torch.equal(long[:, 12:], expected)


def test_sampling_is_reproducible_and_follows_the_distribution():
    model = make()
    a = generate(model, PROMPT, 10, generator=torch.Generator().manual_seed(1))
    b = generate(model, PROMPT, 10, generator=torch.Generator().manual_seed(1))
    c = generate(model, PROMPT, 10, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).expand(40_000, 4)
    for temperature in (1.0, 0.5, 2.0):
        picks = next_token(logits, temperature=temperature, generator=torch.Generator().manual_seed(0))
        frequencies = torch.bincount(picks, minlength=4).float() / len(picks)
        torch.testing.assert_close(frequencies, torch.softmax(logits[0] / temperature, -1), rtol=0, atol=0.01)


def test_top_k_and_top_p_keep_the_right_tokens():
    logits = torch.log(torch.tensor([[0.05, 0.5, 0.15, 0.3]]))
    kept = lambda **kw: torch.isfinite(filter_logits(logits, **kw))[0].tolist()
    assert kept(top_k=1) == [False, True, False, False]
    assert kept(top_k=3) == [False, True, True, True]
    assert kept(top_p=0.5) == [False, True, False, False]
    assert kept(top_p=0.75) == [False, True, False, True]  # 0.5 + 0.3 >= 0.75
    assert kept(top_p=0.85) == [False, True, True, True]
    assert kept(top_p=1.0) == [True, True, True, True]
    model = make()
    greedy = generate(model, PROMPT, 8, greedy=True)
    assert torch.equal(generate(model, PROMPT, 8, top_k=1), greedy)
    assert torch.equal(generate(model, PROMPT, 8, top_p=1e-6), greedy)
    assert torch.equal(generate(model, PROMPT, 8, temperature=0.0), greedy)


def test_stop_tokens_finish_rows_and_pad_them():
    model = make()
    free = generate(model, PROMPT, 8, greedy=True)
    stop = int(free[0, 5])  # row 0's third new token
    first = (free[0, 3:] == stop).nonzero()[0].item() + 3  # where row 0 first emits it
    out = generate(model, PROMPT, 8, greedy=True, stop_tokens=[stop], pad_token=0)
    assert torch.equal(out[0, : first + 1], free[0, : first + 1])
    assert (out[0, first + 1 :] == 0).all()
    row1_stops = (free[1, 3:] == stop).nonzero()
    if len(row1_stops) == 0:  # row 1 never stops: it is generated in full
        assert torch.equal(out[1], free[1])
    always = make(seed=1)
    always.unembed.b_U.data[4] = 100.0  # the model always says 4
    assert generate(always, PROMPT, 8, stop_tokens=4).shape == (2, 4)  # everyone stopped: ended early


def log_probs_of_all(model, src, prefix, n_new) -> dict[tuple, float]:
    """log p(continuation | prefix, src) of every possible continuation, by one batched full forward."""
    continuations = torch.tensor(list(itertools.product(range(V), repeat=n_new)))  # [V^n, n_new]
    sequences = torch.cat([prefix.expand(len(continuations), -1), continuations], dim=1)  # [V^n, pos]
    with torch.no_grad():
        inputs = sequences[:, :-1]
        logits = model(inputs, src=src.expand(len(inputs), -1)) if src is not None else model(inputs)
    log_probs = torch.log_softmax(logits[:, prefix.shape[-1] - 1 :], -1)  # [V^n, n_new, vocab]
    totals = log_probs.gather(2, continuations[..., None]).sum((1, 2))  # [V^n]
    return {tuple(c): float(t) for c, t in zip(continuations.tolist(), totals)}


@pytest.mark.parametrize("arch", ["encoder-decoder", "decoder"])
def test_beam_search_finds_the_most_probable_sequence(arch):
    model = make(arch)
    src = SRC if arch == "encoder-decoder" else None
    prefix = PROMPT[:, :1]
    n_new = 3
    wide, scores = beam_search(model, src, prefix, n_new, beam_size=V ** (n_new - 1), return_scores=True)
    for row in range(2):
        brute = log_probs_of_all(model, src[row : row + 1] if src is not None else None, prefix[row : row + 1], n_new)
        best = max(brute, key=brute.get)
        assert tuple(wide[row, 1:].tolist()) == best
        assert scores[row].item() == pytest.approx(brute[best], abs=1e-4)
    greedy = generate(model, prefix, n_new, src=src, greedy=True)
    assert torch.equal(beam_search(model, src, prefix, n_new, beam_size=1), greedy)
    narrow, narrow_scores = beam_search(model, src, prefix, n_new, beam_size=3, return_scores=True)
    assert (narrow_scores <= scores + 1e-5).all()
    assert torch.equal(narrow, beam_search(model, src, prefix, n_new, beam_size=3, use_cache=False))


def test_beam_search_stops_hypotheses_at_stop_tokens():
    model = make("encoder-decoder")
    out = beam_search(model, SRC, PROMPT[:, :1], 6, beam_size=4, stop_tokens=[2], pad_token=0)
    for row in out[:, 1:].tolist():
        if 2 in row:
            assert all(t == 0 for t in row[row.index(2) + 1 :])


def test_bad_generation_input_is_named():
    model, seq2seq = make(), make("encoder-decoder")
    with pytest.raises(InputError, match="LongTensor"):
        generate(model, PROMPT.float(), 3)
    with pytest.raises(InputError, match="at least one token"):
        generate(model, PROMPT[:, :0], 3)
    with pytest.raises(InputError, match="src="):
        generate(seq2seq, PROMPT, 3)
    with pytest.raises(InputError, match="top_p"):
        generate(model, PROMPT, 3, top_p=1.5)
    with pytest.raises(InputError, match="top_k"):
        generate(model, PROMPT, 3, top_k=0)
    with pytest.raises(InputError, match="temperature"):
        generate(model, PROMPT, 3, temperature=-1.0)
    with pytest.raises(InputError, match="beam_size"):
        beam_search(seq2seq, SRC, PROMPT[:, :1], 3, beam_size=0)


@pytest.mark.parametrize("positional", ["learned", "sinusoidal", "rope", "alibi"])
@pytest.mark.parametrize("use_cache", [True, False])
def test_left_padded_prompts_continue_as_each_would_alone(positional, use_cache):
    """Prompts of different lengths in one batch (left_pad + attention_mask): every row's greedy continuation
    is the one it gets alone, so padding is masked and positions count from each row's first real token."""
    model = make(positional=positional, n_ctx=24)
    with torch.no_grad():
        for p in model.parameters():  # far from uniform, so that a wrong position or a leak would show
            p.normal_(std=0.3)
    prompts = [[1, 2, 3, 4, 5], [6, 2], [3, 3, 3, 1]]
    tokens, mask = left_pad(prompts)
    assert mask.tolist()[1] == [0, 0, 0, 1, 1] and tokens[1, -2:].tolist() == [6, 2]
    batched = generate(model, tokens, 8, greedy=True, attention_mask=mask, use_cache=use_cache)
    for row, prompt in enumerate(prompts):
        alone = generate(model, torch.tensor([prompt]), 8, greedy=True, use_cache=use_cache)
        assert batched[row, -8:].tolist() == alone[0, -8:].tolist()


def test_position_ids_make_a_left_padded_forward_match_each_row():
    model = make(n_ctx=16)
    tokens, mask = left_pad([[1, 2, 3, 4], [5, 6]])
    logits, cache = model.run_with_cache(tokens, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                                         names=["pos_embed", "blocks.1.resid_post"])
    alone = model(torch.tensor([[5, 6]]))
    torch.testing.assert_close(logits[1, -2:], alone[0], atol=1e-5, rtol=1e-5)
    assert cache["pos_embed"].shape == (2, 4, 32)  # per-row positions: one embedding per row


def test_bad_padding_and_position_ids_are_named():
    model = make()
    tokens, mask = left_pad([[1, 2, 3], [4]])
    with pytest.raises(InputError, match="left-padded"):
        generate(model, tokens, 2, attention_mask=mask.flip(1))  # right padding
    with pytest.raises(InputError, match="shape"):
        generate(model, tokens, 2, attention_mask=mask[:, 1:])
    with pytest.raises(InputError, match="must match"):
        model(tokens, position_ids=torch.arange(2))
    with pytest.raises(InputError, match=r"\[0, n_ctx = 16\)"):
        model(tokens, position_ids=torch.full_like(tokens, 16))
    with pytest.raises(InputError, match="no empty"):
        left_pad([[1], []])


@pytest.mark.parametrize("variant", [dict(attention="sliding", window=3), dict(attention="sparse", stride=3),
                                     dict(attention="linear"), dict(n_kv_heads=2, qk_norm=True)])
def test_left_padding_works_for_the_attention_variants(variant):
    model = make(positional="rope", n_ctx=24, **variant)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(std=0.3)
    prompts = [[1, 2, 3, 4, 5, 6, 1], [6, 2, 5, 5, 1], [3, 3, 3, 1]]
    tokens, mask = left_pad(prompts)
    batched = generate(model, tokens, 6, greedy=True, attention_mask=mask)
    for row, prompt in enumerate(prompts):
        assert batched[row, -6:].tolist() == generate(model, torch.tensor([prompt]), 6, greedy=True)[0, -6:].tolist()


def test_left_padding_is_refused_where_positions_are_absolute_blocks():
    model = make(positional="rope", n_ctx=24, attention="sparse", stride=3, sparse_pattern="fixed")
    tokens, mask = left_pad([[1, 2, 3], [4]])
    with pytest.raises(InputError, match="attention_mask.*sparse_pattern='fixed'"):
        generate(model, tokens, 2, attention_mask=mask)


LEAN_VARIANTS = [dict(), dict(positional="rope"), dict(positional="sinusoidal"), dict(positional="none"),
                 dict(positional="rope", n_kv_heads=2, qk_norm=True, norm="rmsnorm", act="swiglu", bias=False),
                 dict(norm_position="post"), dict(parallel_residual=True), dict(embed_norm=True, tie_embeddings=True),
                 dict(positional="rope", norm="rmsnorm", sandwich_norm=True, logit_softcap=5.0)]


@pytest.mark.parametrize("variant", LEAN_VARIANTS)
def test_lean_decoding_step_gives_the_logits_of_the_plain_forward(variant):
    """The lean step (static cache, fused QKV, no mask, no hook dispatch) computes the plain forward's last logits:
    the prompt first, then one token per step, up to n_ctx positions."""
    from glassformer.model.decode import LeanDecoder, lean_decoding_unsupported

    model = make(seed=1, **variant)
    assert lean_decoding_unsupported(model) is None
    lean = LeanDecoder(model, batch=2)
    sequence = PROMPT
    with torch.no_grad():
        logits = lean.step(sequence)
        for _ in range(model.config.n_ctx - PROMPT.shape[1]):
            torch.testing.assert_close(logits, model(sequence)[:, -1], rtol=0, atol=1e-5)
            sequence = torch.cat([sequence, torch.randint(0, V, (2, 1))], dim=1)
            logits = lean.step(sequence[:, -1:])


@pytest.mark.parametrize("variant", LEAN_VARIANTS[:5])
def test_greedy_generation_is_the_same_with_and_without_a_hook(variant):
    """With a hook attached anywhere, generate steps aside from the lean path (the hook sees every step) and emits
    the same tokens, which are the argmax of the plain forward."""
    model = make(seed=2, **variant)
    with torch.no_grad():
        for p in model.parameters():  # far from uniform, so that a wrong key would change the argmax
            p.normal_(std=0.3)
    lean = generate(model, PROMPT, 10, greedy=True)
    seen = []
    with model.hooks({"blocks.1.attn.pattern": lambda pattern, hook: seen.append(pattern.shape)}):
        hooked = generate(model, PROMPT, 10, greedy=True)
    assert len(seen) == 10 and seen[0][-2:] == (3, 3) and seen[1][-2:] == (1, 4)  # the prompt, then one query per step
    assert torch.equal(lean, hooked)
    sequence = PROMPT
    with torch.no_grad():
        for _ in range(10):
            sequence = torch.cat([sequence, model(sequence)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(lean, sequence)


def test_a_hook_that_changes_activations_changes_what_generate_emits():
    model = make(seed=3)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(std=0.3)
    plain = generate(model, PROMPT, 8, greedy=True)
    with model.hooks({"blocks.0.attn_out": lambda x, hook: x * 0}):
        ablated = generate(model, PROMPT, 8, greedy=True)
        with torch.no_grad():
            first = model(PROMPT)[:, -1].argmax(-1)  # the ablated model's own first choice
    assert torch.equal(ablated[:, 3], first) and not torch.equal(plain, ablated)


def test_attention_soft_capping_takes_the_general_path():
    from glassformer.model.decode import lean_decoding_unsupported

    model = make(seed=5, positional="rope", attn_softcap=0.5)
    assert lean_decoding_unsupported(model) == "attention soft-capping"
    sequence = PROMPT
    with torch.no_grad():
        for _ in range(4):
            sequence = torch.cat([sequence, model(sequence)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(generate(model, PROMPT, 4, greedy=True), sequence)


def test_lean_beam_search_follows_the_beams_as_the_general_path():
    model = make(seed=4, positional="rope")
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(std=0.3)
    lean, lean_scores = beam_search(model, None, PROMPT, 6, beam_size=3, return_scores=True)
    with model.hooks({"blocks.0.resid_pre": lambda x, hook: None}):
        general, scores = beam_search(model, None, PROMPT, 6, beam_size=3, return_scores=True)
    assert torch.equal(lean, general)
    torch.testing.assert_close(lean_scores, scores, rtol=0, atol=1e-5)
