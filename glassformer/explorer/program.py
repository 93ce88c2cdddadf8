"""The program beside the model: for a compiled RASP model, its source and every s-op's value; for a
trained one, the decompiled program when the decompiler (``glassformer.rasp.decompile``) is installed.

For an s-op ``x`` on input ``xs`` the page shows two things side by side:

* the RASP interpreter's value ``evaluate(x, xs)[i]`` at every position i (the reference), and
* the model's residual stream at the dimensions labelled for ``x`` (``x=a``, ``x=b``, ... for a
  categorical s-op, one dimension ``x`` for a numerical one): ``resid_final[i, dims(x)]``,

so a one-hot that lands on the right label is the compiled weights computing the program.
"""

from __future__ import annotations

import re

import torch

from glassformer.errors import InputError


def program_of(subject):
    """The RASP program of a compiled subject: kept from compilation, or rebuilt from the library by
    name (a saved checkpoint stores only the name) when every s-op it names has residual dimensions."""
    compiled = subject.compiled
    if compiled is None:
        return None
    if compiled.program is not None:
        return compiled.program
    from glassformer.rasp import language as L
    from glassformer.rasp import library

    if compiled.program_name not in library.names():
        return None
    program = library.get(compiled.program_name)
    labels = compiled.residual_labels
    for node in L.walk(program):
        if isinstance(node, L.SOp) and not _dims_of(node.name, labels) and not _is_fused(node, compiled):
            return None  # not the program these weights were compiled from
    return program


def _is_fused(node, compiled) -> bool:
    """An s-op the compiler folded into a later MLP (it writes no dimensions of its own)."""
    return any(node.name in b.detail for b in compiled.blocks)


def _dims_of(name: str, labels: list[str]) -> list[int]:
    pattern = re.compile(r"(?<![\w])" + re.escape(name) + r"(?![\w])")
    return [i for i, label in enumerate(labels) if pattern.search(label)]


def program_view(subject) -> dict:
    """The program as code, and the s-ops (and selectors) the page can click."""
    if subject.compiled is None:
        return decompiled_view(subject)
    from glassformer.rasp import language as L
    from glassformer.rasp import to_code

    program = program_of(subject)
    compiled = subject.compiled
    base = {"kind": "compiled", "name": compiled.program_name, "describe": compiled.describe(),
            "residual_labels": compiled.residual_labels}
    if program is None:
        return {**base, "code": None, "nodes": [],
                "note": f"the program {compiled.program_name!r} is not in the RASP library, and a checkpoint keeps only "
                        "its name: the model and its residual labels are shown without the source"}
    nodes = []
    for node in L.walk(program):
        kind = "selector" if isinstance(node, L.Selector) else "sop"
        writer = [f"layer {b.layer} {b.kind}" for b in compiled.blocks if b.node == node.name]
        if kind == "sop" and isinstance(node, (L.Tokens, L.Indices)):
            writer = ["the embedding"]
        nodes.append({"name": node.name, "kind": kind, "type": type(node).__name__,
                      "dims": len(_dims_of(node.name, compiled.residual_labels)) if kind == "sop" else 0,
                      "written_by": writer})
    return {**base, "code": to_code(program), "nodes": nodes}


def sop_view(subject, name: str, tokens: list[int]) -> dict:
    """One s-op (or selector) on the input: the interpreter's value per position, and the model's residual
    stream (after the last block) at the dimensions labelled for it."""
    from glassformer.explorer.analysis import forward
    from glassformer.rasp import language as L
    from glassformer.rasp.interpreter import Interpreter

    program = program_of(subject)
    if program is None:
        raise InputError("this model has no RASP program to inspect (only compiled models with a known program do)")
    node = next((n for n in L.walk(program) if n.name == name), None)
    if node is None:
        raise InputError(f"the program has no s-op or selector named {name!r}")
    vocab = subject.compiled.vocab
    xs = [vocab[i - 2] for i in tokens[1:]]  # ids after BOS back to the program's tokens
    value = Interpreter(xs).run(node)
    if isinstance(node, L.Selector):
        return {"name": name, "kind": "selector", "positions": [str(x) for x in xs],
                "matrix": [[bool(v) for v in row] for row in value]}
    labels = subject.compiled.residual_labels
    dims = _dims_of(name, labels)
    hook = _read_point(subject.compiled, name, dims)
    _, cache = forward(subject, tokens, names=[hook])
    resid = cache[hook][0]  # [pos, d_model]
    rows = resid[:, dims] if dims else torch.zeros(resid.shape[0], 0)  # [pos, dims]
    return {
        "name": name, "kind": "sop", "encoding": getattr(node, "encoding", ""),
        "positions": ["BOS"] + [str(x) for x in xs],
        "rasp": [None] + [_json_value(v) for v in value],  # BOS has no program value
        "dims": [{"index": i, "label": labels[i]} for i in dims],
        "model": torch.round(rows.double(), decimals=3).tolist(),
        "note": "" if dims else "the compiler fused this s-op into the MLP that reads it: no dimensions of its own",
    }


def _read_point(compiled, name: str, dims: list[int]) -> str:
    """Where to read an s-op's dimensions: after the last block, or, where a later s-op reuses them
    (``compile(..., reuse_residual=True)``: labels ``a → b (from layer l)``), right after its writer."""
    last = f"blocks.{len(compiled.model.blocks) - 1}.resid_post"
    if not any(" → " in compiled.residual_labels[i] for i in dims):
        return last
    writers = [b for b in compiled.blocks if b.node == name and not b.detail.startswith("erase")]
    if not writers:
        return "blocks.0.resid_pre"  # written by the embedding
    first = min(writers, key=lambda b: (b.layer, b.kind == "mlp"))
    return f"blocks.{first.layer}.{'resid_post' if first.kind == 'mlp' else 'resid_mid'}"


def _decompiler():
    """``glassformer.rasp.decompile`` (a function ``decompile(model, task) -> Decompiled``), or None: the
    decompiler is another subsystem and may not be installed, so the import is guarded."""
    try:
        from glassformer.rasp import decompile  # noqa: F401 -- optional subsystem
    except ImportError:
        return None
    return decompile if callable(decompile) else getattr(decompile, "decompile", None)


def decompiled_view(subject, result=None) -> dict:
    """What the Program tab shows for a trained model: the decompiled program once it has been computed
    (``result``), else whether it can be (the decompiler installed, the training task known)."""
    view = {"kind": "decompiled", "available": False, "code": None}
    if _decompiler() is None:
        return {**view, "note": "the decompiler (glassformer.rasp.decompile) is not part of this installation"}
    if subject.task is None:
        return {**view, "note": "decompiling a trained model needs the task it was trained on; this checkpoint records none"}
    view["available"] = True
    if result is None:
        return {**view, "note": f"the decompiler reads the model on the task {subject.task.get('name')!r} (about a thousand "
                                "inputs plus interventions): it can take a minute, during which the other views wait"}
    return {**view, **result}


def decompile(subject) -> dict:
    """Run the decompiler on a trained subject with its training task: the program's source and how well
    it matches the model (``match_sequence``, ``match_position``) on fresh inputs."""
    fn = _decompiler()
    if fn is None or subject.task is None:
        raise InputError(decompiled_view(subject)["note"])
    from glassformer.train.tasks import get_task

    task = get_task(subject.task["name"], **subject.task.get("options", {}))
    try:
        result = fn(subject.model, task)
    except InputError as e:  # the decompiler refusing a model is an answer, not a server error
        return {"code": None, "note": f"the decompiler could not read this model: {e}"}
    return {"code": getattr(result, "source", None) or str(result),
            "match_sequence": getattr(result, "match_sequence", None), "match_position": getattr(result, "match_position", None),
            "note": ""}


def _json_value(v):
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)
