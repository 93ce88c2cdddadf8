"""``rasp.task``: a generated task whose labels are a RASP program's outputs, and ``train --rasp``."""

import json

import pytest
import torch

from glassformer import rasp
from glassformer.cli import main
from glassformer.errors import ConfigError, GlassformerError
from glassformer.rasp.task import BOS, NONE_CHAR, SEP


def _decoded(task, row) -> str:
    return "".join(task.tokenizer.chars[i] for i in row)


def test_decoder_labels_are_the_interpreters_outputs():
    task = rasp.task("reverse", vocab="abcd", max_len=5, seed=3)
    batch = task.batch(32, "decoder")
    assert batch.inputs.shape == (32, task.n_ctx("decoder")) and batch.attention_mask is not None
    for b in range(32):
        n = (int(batch.attention_mask[b].sum()) - 1) // 2  # ^ P > A[:-1]
        text = _decoded(task, batch.inputs[b, : 2 * n + 1])
        problem = text[1 : n + 1]
        assert text[0] == BOS and text[n + 1] == SEP
        answer = _decoded(task, batch.targets[b][batch.loss_mask[b]])
        assert answer == "".join(rasp.evaluate(rasp.library.reverse(), problem))
        assert not batch.loss_mask[b, : n].any() and not batch.loss_mask[b, 2 * n + 1 :].any()


def test_encoder_predicts_every_position_and_skips_dont_cares():
    task = rasp.task("shift_by", vocab="abc", max_len=6)  # position 0 has no value: a don't-care
    batch = task.batch(16, "encoder")
    program = rasp.library.shift_by()
    for b in range(16):
        n = int(batch.attention_mask[b].sum()) - 1
        xs = _decoded(task, batch.inputs[b, 1 : n + 1])
        want = rasp.evaluate(program, xs)
        assert batch.loss_mask[b, 0].item() is False and batch.loss_mask[b, 1].item() is False  # BOS, None
        for i in range(1, n):
            assert batch.loss_mask[b, i + 1]
            assert task.value_of(task.tokenizer.chars[int(batch.targets[b, i + 1])]) == want[i]
        assert not batch.loss_mask[b, n + 1 :].any()


def test_numerical_and_int_outputs_get_their_own_characters():
    task = rasp.task("frac_prevs", max_len=4)
    assert len(task.output_chars) == len(set(task.output_chars)) == len(task.output_values)
    assert 0.5 in task.output_values and 1 / 3 in task.output_values
    prompt, answer = task.example(torch.Generator().manual_seed(0))
    xs = list(prompt[1:-1])
    assert [task.value_of(c) for c in answer] == rasp.evaluate(rasp.library.frac_prevs(), xs)
    ints = rasp.task("nary_sequence_map", max_len=3)  # int tokens 0..3 become the characters '0'..'3'
    assert ints.input_chars == ["0", "1", "2", "3"]


def test_user_programs_and_bad_input():
    program = rasp.Map(lambda x: x == "a", rasp.tokens, name="is_a")
    task = rasp.task(program, vocab="ab", max_len=3)
    assert set(task.output_values) == {True, False} and NONE_CHAR not in task.output_chars
    with pytest.raises(ConfigError, match="give vocab="):
        rasp.task(program)
    with pytest.raises(ConfigError, match="reserved"):
        rasp.task("reverse", vocab="ab>", max_len=3)
    with pytest.raises(GlassformerError, match="no library program"):
        rasp.task("no_such_program", vocab="ab")
    with pytest.raises(ConfigError, match="max_len"):
        rasp.task("reverse", max_len=0)


def test_train_rasp_cli_writes_a_rasp_task(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--rasp", "histogram", "--option", "vocab=abc", "--option", "max_len=4", "--steps", "3",
                 "--eval-every", "0", "--d-model", "16", "--n-layers", "1", "--quiet", "--device", "cpu", "--out", str(out)])
    assert code == 0
    spec = json.loads((out / "checkpoint" / "task.json").read_text())
    assert spec["name"] == "rasp" and spec["options"]["program"] == "histogram" and spec["options"]["vocab"] == list("abc")
    from glassformer.rasp.decompile.cli import load_run

    model, task = load_run(str(out))
    assert task.max_len == 4 and model.config.d_vocab == task.d_vocab
