"""The explorer's JSON API as plain Python: :class:`Explorer` answers each request body (a dict) with a
dict, and raises :class:`RequestError` (a ``GlassformerError``) naming what is wrong with a bad one. The
web server (:mod:`glassformer.explorer.server`) maps these methods to ``/api/...`` routes one to one;
scripts can call them directly, with no server:

    from glassformer.explorer import Explorer
    ex = Explorer.open("runs/demo")
    ex.run({"text": "abc>", "ablate": [{"layer": 1, "head": 0}]})["predictions"]

Every method is safe to call from several threads (browser tabs): one lock per model serialises the
forward passes, whose hooks are attached to the model while they run. docs/explorer.md lists the routes.
"""

from __future__ import annotations

import math
from threading import Lock

from glassformer.errors import InputError
from glassformer.explorer import analysis, forward_path, program
from glassformer.explorer.sampling import SampleRequest, Sampler
from glassformer.explorer.session import Subject, load_subject
from glassformer.lens.cache import heads_per_block


class RequestError(InputError):
    """A request the API cannot answer: malformed, a field of the wrong type, an unknown field."""


def fields(body, spec: dict[str, tuple], required: tuple[str, ...] = ()) -> dict:
    """``body`` checked against ``spec`` = {field: (allowed types, default)}; unknown fields are refused."""
    if not isinstance(body, dict):
        raise RequestError(f"the request body must be a JSON object, got {type(body).__name__}")
    unknown = sorted(set(body) - set(spec))
    if unknown:
        raise RequestError(f"unknown field(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(sorted(spec))}")
    out = {}
    for name, (types, default) in spec.items():
        if name not in body or body[name] is None:
            if name in required:
                raise RequestError(f"the field {name!r} is required")
            out[name] = default
            continue
        value = body[name]
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            wanted = " or ".join("number" if t is float else t.__name__ for t in types)
            raise RequestError(f"the field {name!r} must be {wanted}, got {type(value).__name__}")
        if isinstance(value, float) and not math.isfinite(value):
            raise RequestError(f"the field {name!r} must be a finite number")
        out[name] = value
    return out


INPUT = {"text": ((str,), None), "src": ((str,), None)}


class Explorer:
    """One model (and optionally a second to compare against) behind the API."""

    def __init__(self, subject: Subject, compare: Subject | None = None):
        self.subject, self.other = subject, compare
        self.locks = {id(subject): Lock(), **({id(compare): Lock()} if compare is not None else {})}
        self.sampler = Sampler()
        self.traces = forward_path.TraceCache()
        self.decompiled: dict | None = None  # computed once, on request

    @classmethod
    def open(cls, path, compare=None, *, seed: int = 0) -> Explorer:
        """Load ``path`` (a checkpoint, compiled program, Hugging Face folder or config) and ``compare``."""
        return cls(load_subject(path, seed=seed), load_subject(compare, seed=seed) if compare is not None else None)

    # -- GET /api/info ----------------------------------------------------------------------------------

    def info(self) -> dict:
        return {"model": self.subject.info(), "compare": self.other.info() if self.other is not None else None}

    # -- POST /api/run ----------------------------------------------------------------------------------

    def run(self, body: dict) -> dict:
        """Predictions, attention (one layer), detectors, logit lens, attribution; with interventions the
        unablated predictions too; with ``compare`` the second model on the same input and the differences."""
        f = fields(body, {**INPUT, "layer": ((int,), 0), "top_k": ((int,), 5), "ablate": ((list,), []),
                          "patch_text": ((str,), None), "dla_token": ((int,), None), "dla_pos": ((int,), -1),
                          "dla_per_head": ((bool,), True), "compare": ((bool,), False), "views": ((list,), None)},
                   required=("text",))
        views = tuple(analysis.VIEWS if f["views"] is None else f["views"])
        if not all(isinstance(v, str) for v in views):
            raise RequestError("views must be a list of names: " + ", ".join(analysis.VIEWS))
        if not 1 <= f["top_k"] <= 50:
            raise RequestError(f"top_k must be in 1..50, got {f['top_k']}")
        s = self.subject
        tokens, src = self._inputs(s, f)
        req = analysis.RunRequest(
            tokens, src, f["layer"], f["top_k"], [_intervention(x) for x in f["ablate"]],
            s.encode(f["patch_text"], "the patch input") if f["patch_text"] else None,
            f["dla_token"], f["dla_pos"], f["dla_per_head"], views,
        )
        with self.locks[id(s)]:
            out = analysis.run(s, req)
        if f["compare"]:
            out["compare"] = self._compare(f, out)
        return out

    def _compare(self, f: dict, mine: dict) -> dict:
        if self.other is None:
            raise RequestError("no second model to compare with: start the explorer with --compare B")
        o = self.other
        try:
            tokens, src = self._inputs(o, f)
        except InputError as e:
            return {"error": f"the second model cannot read this input: {e}"}
        layer = min(f["layer"], len(o.model.blocks) - 1)
        with self.locks[id(o)]:
            theirs = analysis.run(o, analysis.RunRequest(tokens, src, layer, f["top_k"], views=("attention",)))
        same_shape = (len(tokens) == len(mine["tokens"]) and heads_per_block(o.model) == heads_per_block(self.subject.model))
        diff = {"same_outputs": o.out_labels == self.subject.out_labels, "same_tokens": tokens == [t["id"] for t in mine["tokens"]]}
        if diff["same_outputs"]:
            a = [p[0]["id"] for p in mine["predictions"]]
            b = [p[0]["id"] for p in theirs["predictions"]]
            diff["top1_differs"] = [x != y for x, y in zip(a, b)] if len(a) == len(b) else None
        if same_shape and layer == f["layer"] and "attention" in mine:
            diff["attention_diff"] = [  # per head: max_q sum_k |A - B| / 2 (total variation, in [0, 1])
                round(max(sum(abs(x - y) for x, y in zip(ra, rb)) / 2 for ra, rb in zip(ha, hb)), 3)
                for ha, hb in zip(mine["attention"]["heads"], theirs["attention"]["heads"])
            ]
        return {**theirs, "diff": diff}

    def _inputs(self, s: Subject, f: dict):
        tokens = s.encode(f["text"])
        if s.model.config.arch == "encoder-decoder":
            if not f.get("src"):
                raise RequestError("this encoder-decoder model needs a source input (src) too")
            return tokens, s.encode(f["src"], "the source input")
        if f.get("src"):
            raise RequestError(f"a {s.model.config.arch} model takes no source input (src)")
        return tokens, None

    # -- POST /api/path, /api/step (the forward pass, equation by equation) --------------------------

    def path(self, body: dict) -> dict:
        f = fields(body, dict(INPUT), required=("text",))
        tokens, src = self._inputs(self.subject, f)
        with self.locks[id(self.subject)]:
            doc = self.traces.get(self.subject, tokens, src)
        return forward_path.path(doc)

    def step(self, body: dict) -> dict:
        f = fields(body, {**INPUT, "section": ((int,), None), "step": ((int,), None)}, required=("text", "section", "step"))
        tokens, src = self._inputs(self.subject, f)
        with self.locks[id(self.subject)]:
            doc = self.traces.get(self.subject, tokens, src)
        return forward_path.step(doc, f["section"], f["step"])

    # -- POST /api/generate ---------------------------------------------------------------------------

    def generate(self, body: dict) -> dict:
        f = fields(body, {"text": ((str,), None), "stream": ((str,), "default"), "temperature": ((int, float), 1.0),
                          "top_k": ((int,), None), "top_p": ((int, float), None), "seed": ((int,), 0)}, required=("text",))
        s = self.subject
        req = SampleRequest(s.encode(f["text"]), f["stream"], float(f["temperature"]), f["top_k"],
                            None if f["top_p"] is None else float(f["top_p"]), f["seed"])
        with self.locks[id(s)]:
            return self.sampler.step(s, req)

    # -- GET /api/program, POST /api/sop ---------------------------------------------------------------

    def program(self) -> dict:
        if self.subject.compiled is None:
            return program.decompiled_view(self.subject, self.decompiled)
        return program.program_view(self.subject)

    # -- POST /api/decompile ---------------------------------------------------------------------------

    def decompile(self, body: dict | None = None) -> dict:
        """Decompile the (trained) model once; later calls return the same program."""
        fields(body or {}, {})
        if self.subject.compiled is not None:
            raise RequestError("this is a compiled model: its program is shown as it was compiled")
        if self.decompiled is None:
            with self.locks[id(self.subject)]:
                self.decompiled = program.decompile(self.subject)
        return program.decompiled_view(self.subject, self.decompiled)

    def sop(self, body: dict) -> dict:
        f = fields(body, {"text": ((str,), None), "name": ((str,), None)}, required=("text", "name"))
        tokens = self.subject.encode(f["text"])
        with self.locks[id(self.subject)]:
            return program.sop_view(self.subject, f["name"], tokens)


def _intervention(x) -> analysis.Intervention:
    f = fields(x, {"layer": ((int,), None), "head": ((int,), None), "mlp": ((bool,), False), "mode": ((str,), "zero")},
               required=("layer",))
    if f["mlp"] == (f["head"] is not None):
        raise RequestError("an intervention names either a head ({'layer': l, 'head': h}) or an MLP ({'layer': l, 'mlp': true})")
    if f["mode"] not in analysis.MODES:
        raise RequestError(f"mode must be one of {', '.join(analysis.MODES)}, got {f['mode']!r}")
    return analysis.Intervention("mlp" if f["mlp"] else "head", f["layer"], f["head"], f["mode"])
