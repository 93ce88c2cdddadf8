"""loss_fn and accuracy against direct computations; Batch helpers (to, split, slicing, counts) and
gradient accumulation with split(); every task's batches run through a real Transformer."""

import math

import pytest
import torch
import torch.nn.functional as F

from glassformer import ModelConfig, Transformer
from glassformer.errors import InputError
from glassformer.train.batch import Batch
from glassformer.train.metrics import accuracy, accuracy_counts, loss_fn
from glassformer.train.tasks import TASKS, get_task


def masked_batch(B=6, pos=5, vocab=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randint(0, vocab, (B, pos), generator=g)
    targets = torch.randint(0, vocab, (B, pos), generator=g)
    loss_mask = torch.rand(B, pos, generator=g) < 0.5
    loss_mask[:, -1] = True  # every row counts somewhere
    return Batch(inputs, targets, loss_mask)


def test_loss_is_cross_entropy_over_masked_positions():
    batch = masked_batch()
    logits = torch.randn(6, 5, 7)
    terms = [
        -torch.log_softmax(logits[b, t], -1)[batch.targets[b, t]]
        for b in range(6) for t in range(5) if batch.loss_mask[b, t]
    ]
    assert torch.allclose(loss_fn(logits, batch), torch.stack(terms).mean())
    assert torch.allclose(loss_fn(logits, batch, reduction="sum"), torch.stack(terms).sum())
    bf16 = loss_fn(logits.bfloat16(), batch)
    assert bf16.dtype == torch.float32 and torch.allclose(bf16, loss_fn(logits.bfloat16().float(), batch))
    # positions outside the mask do not matter
    changed = logits.clone()
    changed[~batch.loss_mask] = 100.0
    assert torch.allclose(loss_fn(changed, batch), loss_fn(logits, batch))


def test_classification_loss_and_accuracy():
    labels = torch.tensor([0, 2, 1, 1])
    batch = Batch(torch.zeros(4, 3, dtype=torch.long), labels, None)
    logits = torch.tensor([[3.0, 0, 0], [0, 0, 1], [0, 2, 0], [5, 0, 0]])
    assert torch.allclose(loss_fn(logits, batch), F.cross_entropy(logits, labels))
    assert accuracy(logits, batch) == (0.75, 0.75)
    assert accuracy_counts(logits, batch) == (3, 4, 3, 4)
    with pytest.raises(InputError, match="n_classes"):
        loss_fn(torch.zeros(4, 3, 3), batch)


def test_token_and_sequence_accuracy():
    batch = masked_batch()
    perfect = F.one_hot(batch.targets, 7).float()  # [6, 5, 7] argmax = target everywhere
    assert accuracy(perfect, batch) == (1.0, 1.0)
    n = int(batch.loss_mask.sum())
    wrong = perfect.clone()
    wrong[0, 4] = F.one_hot((batch.targets[0, 4] + 1) % 7, 7).float()  # one masked position wrong
    r, c = torch.nonzero(~batch.loss_mask)[0].tolist()
    wrong[r, c] = F.one_hot((batch.targets[r, c] + 1) % 7, 7).float()  # an unmasked position: ignored
    token_acc, seq_acc = accuracy(wrong, batch)
    assert token_acc == pytest.approx(1 - 1 / n) and seq_acc == pytest.approx(5 / 6)
    assert accuracy_counts(wrong, batch) == (n - 1, n, 5, 6)
    empty = Batch(batch.inputs, batch.targets, torch.zeros_like(batch.loss_mask))
    assert all(math.isnan(a) for a in accuracy(perfect, empty))
    with pytest.raises(InputError, match="selects no positions"):
        loss_fn(perfect, empty)
    with pytest.raises(InputError, match=r"\[batch, pos, d_vocab\]"):
        loss_fn(perfect[:, :4], batch)


def test_batch_helpers():
    batch = masked_batch(B=7)
    assert len(batch) == batch.batch_size == 7 and batch.n_tokens == 35
    assert batch.n_targets == int(batch.loss_mask.sum()) and not batch.is_classification
    parts = batch.split(3)
    assert [len(p) for p in parts] == [2, 3, 2]
    assert torch.equal(torch.cat([p.inputs for p in parts]), batch.inputs)
    assert torch.equal(torch.cat([p.loss_mask for p in parts]), batch.loss_mask)
    assert torch.equal(batch[2].inputs, batch.inputs[2:3]) and batch[1:4].targets.shape == (3, 5)
    moved = batch.to("cpu")
    assert torch.equal(moved.targets, batch.targets) and moved.src is None
    with pytest.raises(InputError, match="1..7"):
        batch.split(8)
    padded = Batch(batch.inputs, batch.targets, batch.loss_mask, src=torch.zeros(7, 4, dtype=torch.long),
                   attention_mask=torch.ones(7, 5).tril_(), src_attention_mask=torch.ones(7, 4))
    assert padded.n_tokens == int(torch.ones(7, 5).tril().sum()) + 28
    assert padded.split(7)[3].src.shape == (1, 4)
    with pytest.raises(InputError, match="loss_mask has 6 rows"):
        Batch(batch.inputs, batch.targets, batch.loss_mask[:6])
    with pytest.raises(InputError, match=r"inputs must be \[batch, pos\]"):
        Batch(batch.inputs[0], batch.targets, batch.loss_mask)


def test_split_accumulation_gives_the_full_batch_gradient():
    torch.manual_seed(0)
    W = torch.randn(7, 7, requires_grad=True)  # a bigram "model": logits = W[inputs]
    batch = masked_batch(B=9, seed=3)
    loss_fn(W[batch.inputs], batch).backward()
    full = W.grad.clone()
    W.grad = None
    for part in batch.split(4):  # uneven numbers of masked positions per micro-batch
        (loss_fn(W[part.inputs], part, reduction="sum") / batch.n_targets).backward()
    assert torch.allclose(W.grad, full, atol=1e-6)


@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_runs_through_a_transformer(name):
    task = get_task(name, **({"p": 13} if name == "modular-addition" else {}))
    for arch in task.archs:
        cfg = ModelConfig(arch=arch, d_model=16, n_layers=1, n_heads=2, d_vocab=task.d_vocab,
                          n_ctx=task.n_ctx(arch), n_classes=task.n_classes if arch == "encoder" else 0)
        model = Transformer(cfg)
        batch = task.batch(4, arch)
        if arch == "encoder":
            logits = model.classify(batch.inputs, attention_mask=batch.attention_mask)
        else:
            logits = model(batch.inputs, src=batch.src, attention_mask=batch.attention_mask) if batch.src is not None \
                else model(batch.inputs, attention_mask=batch.attention_mask)
        loss = loss_fn(logits, batch)
        n_out = task.n_classes if arch == "encoder" else task.d_vocab
        assert torch.isfinite(loss) and abs(loss.item() - math.log(n_out)) < 1.0  # near chance at init
        token_acc, seq_acc = accuracy(logits, batch)
        assert 0 <= seq_acc <= token_acc <= 1 or (batch.is_classification and seq_acc == token_acc)
