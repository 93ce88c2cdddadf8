"""Generated tasks: shapes, masks and layouts per arch; every answer re-derived from the problem text
by an independent reference solver; seeding; balance; splits; errors."""

from collections import Counter

import pytest
import torch

from glassformer.errors import ConfigError
from glassformer.train.tasks import MOD_ALPHABET, TASKS, get_task, list_tasks, number_to_char

BASE36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def balanced(s: str) -> bool:
    pairs, stack = {")": "(", "]": "[", "}": "{"}, []
    for ch in s:
        if ch in "([{":
            stack.append(ch)
        elif not stack or stack.pop() != pairs[ch]:
            return False
    return not stack


def solve(task, problem: str) -> str:
    """The answer text for a problem text, computed here from the task's definition (not its code)."""
    o = task.options
    if task.name == "copy":
        return problem
    if task.name == "reverse":
        return problem[::-1]
    if task.name == "sort":
        return "".join(sorted(problem))
    if task.name == "histogram":
        return "".join(ch + BASE36[problem.count(ch)] for ch in problem)  # each letter, then its count
    if task.name == "addition":
        a, b = problem.split("+")
        assert len(a) == len(b) == o["n_digits"]
        answer = str(int(a) + int(b)).zfill(o["n_digits"] + 1)
        return answer[::-1] if o["reverse_answer"] else answer
    if task.name == "dyck":
        return "1" if balanced(problem) else "0"
    if task.name == "modular-addition":
        a, plus, b = problem
        assert plus == "+"
        return MOD_ALPHABET[(MOD_ALPHABET.index(a) + MOD_ALPHABET.index(b)) % o["p"]]
    if task.name == "contains-ab":
        return "1" if "a" in problem and "b" in problem else "0"
    if task.name == "induction":  # f r r: the answer continues the repeat n = len(r) tokens back
        width, k = 2 * o["length"], o["min_length"] - 1
        n = (len(problem) - 1 - problem.index(problem[-1])) if o["distinct"] else o["length"]
        seq = list(problem)
        while len(seq) < width:
            seq.append(seq[-n])
        assert len(problem) == width - k and o["min_length"] <= n <= o["length"]
        return "".join(seq[-k:])
    if task.name == "majority":
        (top, n), *rest = Counter(problem).most_common()
        assert not rest or rest[0][1] < n, "ties must not be drawn"
        return top
    raise AssertionError(task.name)


# every task with its defaults, plus option variants that change the format
VARIANTS = [(name, {}) for name in TASKS] + [
    ("reverse", {"length": 5, "vocab_size": 26}),
    ("histogram", {"length": 12, "vocab_size": 3}),  # counts above 9 are written A, B, C
    ("addition", {"n_digits": 5, "reverse_answer": True}),
    ("dyck", {"length": 10, "n_types": 3}),
    ("modular-addition", {"p": 13, "split": "test"}),
    ("induction", {"length": 5, "min_length": 5, "vocab_size": 3, "distinct": False}),
    ("majority", {"length": 7, "vocab_size": 3}),
]
IDS = [f"{n}-{'-'.join(f'{k}{v}' for k, v in o.items())}" if o else n for n, o in VARIANTS]


@pytest.mark.parametrize("name,options", VARIANTS, ids=IDS)
def test_decoder_layout_and_answers(name, options):
    task = get_task(name, **options)
    tok, B = task.tokenizer, 64
    batch = task.batch(B, "decoder")
    n_ctx = task.n_ctx("decoder")
    assert batch.inputs.shape == batch.targets.shape == batch.loss_mask.shape == (B, n_ctx)
    assert batch.inputs.dtype == batch.targets.dtype == torch.long and batch.loss_mask.dtype == torch.bool
    assert batch.src is None and batch.attention_mask is None
    assert torch.equal(batch.inputs[:, 1:], batch.targets[:, :-1])  # targets are the next tokens
    assert int(batch.inputs.max()) < task.d_vocab and int(batch.targets.min()) >= 0
    prompt_len = task.problem_len + len(task.sep)
    # the mask is exactly the positions whose target is an answer token
    expected_mask = torch.arange(n_ctx) >= prompt_len - 1
    assert torch.equal(batch.loss_mask, expected_mask.expand(B, -1))
    for row in range(B):
        text = tok.decode(batch.inputs[row]) + tok.decode(batch.targets[row, -1:])
        problem, sep, answer = text[: task.problem_len], text[task.problem_len : prompt_len], text[prompt_len:]
        assert sep == task.sep
        assert answer == solve(task, problem), text
        assert tok.decode(batch.targets[row][batch.loss_mask[row]]) == answer


@pytest.mark.parametrize("name,options", [v for v in VARIANTS if "encoder-decoder" in TASKS[v[0]].archs])
def test_encoder_decoder_layout(name, options):
    task = get_task(name, **options)
    tok, B = task.tokenizer, 32
    batch = task.batch(B, "encoder-decoder")
    assert batch.src.shape == (B, task.problem_len) and batch.inputs.shape == batch.targets.shape == (B, task.answer_len)
    assert task.n_ctx("encoder-decoder") == max(task.problem_len, task.answer_len)
    assert batch.loss_mask.all() and batch.loss_mask.dtype == torch.bool
    sep_id = tok.stoi[task.sep]
    assert (batch.inputs[:, 0] == sep_id).all()  # the separator starts the decoder
    assert torch.equal(batch.inputs[:, 1:], batch.targets[:, :-1])  # teacher forcing
    for row in range(B):
        assert tok.decode(batch.targets[row]) == solve(task, tok.decode(batch.src[row]))


@pytest.mark.parametrize("name,options", [v for v in VARIANTS if "encoder" in TASKS[v[0]].archs])
def test_encoder_classification_layout(name, options):
    task = get_task(name, **options)
    tok, B = task.tokenizer, 64
    batch = task.batch(B, "encoder")
    assert batch.inputs.shape == (B, task.n_ctx("encoder")) == (B, 1 + task.problem_len)
    assert batch.targets.shape == (B,) and batch.targets.dtype == torch.long and batch.loss_mask is None
    assert batch.is_classification and task.n_classes > 1
    assert (batch.inputs[:, 0] == tok.stoi["^"]).all()  # the classifier reads position 0
    assert 0 <= int(batch.targets.min()) and int(batch.targets.max()) < task.n_classes
    for row in range(B):
        answer = solve(task, tok.decode(batch.inputs[row, 1:]))
        assert task.class_chars[int(batch.targets[row])] == answer


def test_unsupported_arch_and_bad_options_raise():
    with pytest.raises(ConfigError, match="encoder-decoder"):
        get_task("dyck").batch(4, "encoder-decoder")
    with pytest.raises(ConfigError, match="arch"):
        get_task("reverse").n_ctx("encoder")
    with pytest.raises(ConfigError, match="unknown task 'revers'.*reverse"):
        get_task("revers")
    with pytest.raises(ConfigError, match="no option 'lenght'.*length"):
        get_task("reverse", lenght=8)
    with pytest.raises(ConfigError, match="length"):
        get_task("copy", length=0)
    with pytest.raises(ConfigError, match="vocab_size"):
        get_task("sort", vocab_size=27)
    with pytest.raises(ConfigError, match="even"):
        get_task("dyck", length=7)
    with pytest.raises(ConfigError, match="distinct"):
        get_task("induction", length=8, vocab_size=10)  # the shortest repeat's row needs 2 * 8 - 5 = 11 letters
    with pytest.raises(ConfigError, match="train_fraction"):
        get_task("modular-addition", train_fraction=1.5)
    with pytest.raises(ConfigError, match="split"):
        get_task("modular-addition", split="dev")
    with pytest.raises(ConfigError, match="batch_size"):
        get_task("copy").batch(0)


def test_registry_lists_every_task():
    names = [n for n, _ in list_tasks()]
    assert names == ["copy", "reverse", "sort", "histogram", "addition", "dyck", "modular-addition",
                     "contains-ab", "induction", "majority"]
    assert all(desc for _, desc in list_tasks())
    for name in names:
        task = get_task(name)
        assert task.name == name and "decoder" in task.archs
        assert all(len(ch) == 1 for ch in task.tokenizer.chars)
        prompt, answer = task.example(torch.Generator().manual_seed(1))
        assert task.tokenizer.decode(task.tokenizer.encode(prompt + answer)) == prompt + answer
        assert answer == solve(task, prompt[: task.problem_len])


@pytest.mark.parametrize("name", list(TASKS))
def test_seeded_and_reproducible(name):
    a, b = get_task(name, seed=3), get_task(name, seed=3)
    for _ in range(2):  # the task's own generator: same stream for the same seed
        x, y = a.batch(16, a.archs[-1]), b.batch(16, b.archs[-1])
        assert torch.equal(x.inputs, y.inputs) and torch.equal(x.targets, y.targets)
    first, second = get_task(name, seed=3).batch(16), get_task(name, seed=3).batch(16)
    assert torch.equal(first.inputs, second.inputs)
    c = get_task(name, seed=3)
    assert not torch.equal(c.batch(32).inputs, c.batch(32).inputs)  # endless: fresh examples each call
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert torch.equal(a.batch(8, generator=g1).inputs, get_task(name, seed=99).batch(8, generator=g2).inputs)
    rebuilt = get_task(name, **get_task(name, seed=5).options)  # options rebuild the task
    assert torch.equal(rebuilt.batch(8).inputs, get_task(name, seed=5).batch(8).inputs)


def test_reverse_prompt_is_plain_text():
    task = get_task("reverse")
    assert task.n_ctx() == 16 and task.d_vocab == 9
    prompt, answer = task.example()
    assert len(prompt) == 9 and prompt.endswith(">") and answer == prompt[:-1][::-1]
    assert prompt.isprintable() and all("a" <= ch <= "h" for ch in answer)


def test_histogram_answer_is_each_letter_then_its_count():
    task = get_task("histogram", length=4, vocab_size=3)
    problems = torch.tensor([task.tokenizer.encode("abca")])
    assert task.tokenizer.decode(task.answer(problems)[0]) == "a2b1c1a2"
    assert task.answer_len == 8 and task.n_ctx("decoder") == 4 + 1 + 8 - 1 and task.n_ctx("encoder-decoder") == 8


@pytest.mark.parametrize("name", ["dyck", "contains-ab"])
def test_yes_no_tasks_are_balanced_and_negatives_are_hard(name):
    task = get_task(name, seed=1)
    batch = task.batch(4000, "encoder")
    assert 0.46 < batch.targets.float().mean() < 0.54
    negatives = [task.tokenizer.decode(row[1:]) for row in batch.inputs[batch.targets == 0]]
    if name == "dyck":  # a third to a half of the negatives have equal numbers of ( and ): counting is not enough
        equal = sum(s.count("(") == s.count(")") for s in negatives) / len(negatives)
        assert 0.3 < equal < 0.7
    else:  # most negatives contain one of a, b
        one = sum(("a" in s) != ("b" in s) for s in negatives) / len(negatives)
        assert 0.7 < one < 0.9


def test_dyck_positives_are_uniform_over_balanced_sequences():
    task = get_task("dyck", length=8)
    batch = task.batch(6000, "encoder")
    positives = Counter(task.tokenizer.decode(row[1:]) for row in batch.inputs[batch.targets == 1])
    assert len(positives) == 14  # the Catalan number C_4: every balanced sequence of length 8
    expected = sum(positives.values()) / 14
    assert all(0.7 * expected < n < 1.3 * expected for n in positives.values())


def test_dyck_with_several_bracket_types_has_type_mismatch_negatives():
    task = get_task("dyck", length=8, n_types=2)
    batch = task.batch(2000, "encoder")
    texts = [task.tokenizer.decode(row[1:]) for row in batch.inputs]
    as_one_type = [t.translate(str.maketrans("[]", "()")) for t in texts]
    mismatched = [lab == 0 and balanced(s) for lab, s in zip(batch.targets.tolist(), as_one_type)]
    assert sum(mismatched) > 200  # balanced as one type, unbalanced as two: only the types are wrong
    assert all(balanced(t) == bool(lab) for t, lab in zip(texts, batch.targets.tolist()))


def test_majority_classes_are_uniform():
    task = get_task("majority", vocab_size=4)
    counts = torch.bincount(task.batch(4000, "encoder").targets, minlength=4)
    assert (counts > 850).all() and task.n_classes == 4


def test_modular_addition_split_is_fixed_disjoint_and_complete():
    p = 113
    train = get_task("modular-addition")
    test = train.with_split("test")
    assert train.tokenizer.vocab_size == p + 2 and len(set(MOD_ALPHABET)) == len(MOD_ALPHABET)
    assert number_to_char(100) == "ç" and number_to_char(107) == "î" and MOD_ALPHABET[:12] == "0123456789ab"
    assert len(train) == round(0.3 * p * p) == 3831 and len(train) + len(test) == p * p
    tr, te = set(train.pairs.tolist()), set(test.pairs.tolist())
    assert not tr & te and tr | te == set(range(p * p))
    assert torch.equal(get_task("modular-addition", seed=9).pairs, train.pairs)  # seed never changes the split
    assert not torch.equal(get_task("modular-addition", split_seed=1).pairs, train.pairs)
    assert len(get_task("modular-addition", train_fraction=0.5)) == round(0.5 * p * p)

    full = train.full_batch()  # every training pair once, in order
    assert full.inputs.shape == (len(train), 4) and full.loss_mask.sum() == len(train)
    assert full.loss_mask[:, :3].sum() == 0
    decoded = ["".join(train.tokenizer.decode(r)) for r in full.inputs]
    pairs = [MOD_ALPHABET.index(s[0]) * p + MOD_ALPHABET.index(s[2]) for s in decoded]
    assert pairs == sorted(tr)
    answers = [MOD_ALPHABET.index(train.tokenizer.decode(t[-1:])) for t in full.targets]
    assert answers == [(x // p + x % p) % p for x in pairs]

    sampled = test.batch(500).inputs
    assert {MOD_ALPHABET.index(chr_a) * p + MOD_ALPHABET.index(chr_b)
            for chr_a, _, chr_b, _ in (test.tokenizer.decode(r) for r in sampled)} <= te


def test_induction_repeats_sequences_of_varying_length_at_varying_offsets():
    task = get_task("induction", length=8, vocab_size=16)  # repeats of 5..8 letters, answer: the last 4
    batch = task.batch(256, generator=torch.Generator().manual_seed(0))
    assert batch.inputs.shape == (256, 15) and batch.loss_mask.sum(1).eq(4).all()
    lengths = set()
    for row in range(256):
        text = task.tokenizer.decode(batch.inputs[row]) + task.tokenizer.decode(batch.targets[row, -1:])
        assert len(set(text)) == len(text) - (n := len(text) - 1 - text.index(text[-1]))  # distinct, but the repeat
        assert text[-2 * n : -n] == text[-n:] and 5 <= n <= 8
        lengths.add(n)
        # every counted target follows the same token's first occurrence (what an induction head copies)
        for t in torch.nonzero(batch.loss_mask[row]).flatten().tolist():
            assert text[t + 1] == text[text.index(text[t]) + 1]
    assert lengths == {5, 6, 7, 8}  # so no fixed look-back distance answers every row
    fixed = task.with_repeat_length(6).batch(8)
    assert (fixed.inputs[:, 10:] == fixed.inputs[:, 4:9]).all()  # filler of 4, then r r, r 6 letters long


def test_a_checkpoint_of_an_older_task_layout_is_refused():
    """histogram changed its layout (format 2: letters before counts); a spec saved with format 1, or from
    before formats were recorded, must not be silently rebuilt into the new layout and mis-scored."""
    from glassformer.errors import CheckpointError
    from glassformer.train.trainer import task_from_spec, task_spec

    spec = task_spec(get_task("histogram", length=4))
    assert spec["format"] == 2 and task_from_spec(spec).answer_len == 8
    for old in ({**spec, "format": 1}, {"name": "histogram", "options": spec["options"]}):
        with pytest.raises(CheckpointError, match="format 1.*format 2"):
            task_from_spec(old)
    assert task_from_spec({"name": "reverse", "options": {"length": 8}}).name == "reverse"  # old specs of unchanged tasks load
