"""Hook points: a named place in the forward pass where an activation can be read or replaced.

Every intermediate of a :class:`~glassformer.Transformer` passes through a :class:`HookPoint`, an identity
module. Its *name* is its path in the module tree (``blocks.0.attn.pattern``); a hook point attribute called
``output`` is named after the module that owns it (a norm's output is ``blocks.0.ln1``, not
``blocks.0.ln1.output``). TransformerLens's names (``blocks.0.attn.hook_pattern``, ``hook_resid_pre``)
resolve to these wherever a name is accepted (``hook_aliases.py``); docs/hooks.md lists every hook point.

A forward hook is a function ``fn(activation, hook) -> None | Tensor``: returning a tensor replaces the
activation. A backward hook ``fn(grad, hook) -> None | Tensor`` sees (and may replace) the gradient of the
loss with respect to the activation. With no hook attached a hook point costs one attribute test.

*Optional* hook points (each head's ``attn.result``, the per-head inputs ``attn.q_input`` / ``k_input`` /
``v_input``) are computed only while something is attached to them: the default forward never builds
these [batch, pos, heads, d_model] tensors, and ``run_with_cache()`` without ``names=`` leaves them out
unless ``model.set_use_attn_result(True)`` / ``model.set_use_split_qkv_input(True)`` asks for them.
"""

from __future__ import annotations

import contextlib
import fnmatch
from collections.abc import Callable, Iterable, Iterator
from typing import Union

import torch
from torch import nn

from glassformer.errors import InputError
from glassformer.model.hook_aliases import GRAD_SUFFIX, resolve_alias, unknown_alias_hint

HookFn = Callable[[torch.Tensor, "HookPoint"], Union[torch.Tensor, None]]
NameFilter = Union[None, str, Iterable[str], Callable[[str], bool]]
HookSpec = Union[dict[str, HookFn], Iterable[tuple[str, HookFn]]]


class HookPoint(nn.Module):
    """Identity on the forward pass, with a list of hook functions that may read or replace its input.

    ``optional=True`` marks a hook point whose owner computes its activation only when it is ``active``."""

    def __init__(self, optional: bool = False) -> None:
        super().__init__()
        self.name: str = ""
        self.fns: list[HookFn] = []
        self.optional = optional
        self.in_default = not optional  # whether run_with_cache() without names= caches it

    def __call__(self, x: torch.Tensor) -> torch.Tensor:  # skip nn.Module's call machinery: it is an identity
        if not self.fns:
            return x
        for fn in self.fns:
            out = fn(x, self)
            if out is not None:
                if not isinstance(out, torch.Tensor) or out.shape != x.shape:
                    raise InputError(
                        f"hook on {self.name!r} must return None or a tensor of shape {tuple(x.shape)}, "
                        f"got {getattr(out, 'shape', type(out).__name__)}"
                    )
                x = out
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)

    @property
    def active(self) -> bool:
        """Whether any hook is attached (components use this to pick the fused attention path)."""
        return bool(self.fns)

    def extra_repr(self) -> str:
        return repr(self.name) + (", optional" if self.optional else "")


def name_hook_points(root: nn.Module) -> dict[str, HookPoint]:
    """Give every hook point below ``root`` its dotted name; return them by name, in forward order.

    Each hook point is also bound as a plain attribute of its owner. nn.Module keeps submodules in
    ``_modules``, so ``self.q`` first fails Python's normal lookup and then runs ``nn.Module.__getattr__``:
    ~1 us with cache misses, and a one-token decoding step reaches ~70 hook points (4% of the step,
    measured). Hook points are identities that are never swapped; assigning a new one through
    ``nn.Module.__setattr__`` still drops the binding."""
    points: dict[str, HookPoint] = {}
    for path, module in root.named_modules():
        if isinstance(module, HookPoint):
            name = path.removesuffix(".output") if path.endswith(".output") else path
            module.name = name
            points[name] = module
        for attr, child in module._modules.items():
            if isinstance(child, HookPoint):
                module.__dict__[attr] = child
    return points


def match_names(names: NameFilter, all_names: Iterable[str], default: Iterable[str] | None = None) -> list[str]:
    """Resolve a name filter to hook names: ``None`` = ``default`` (all when not given), a name or glob
    (``blocks.*.attn.pattern``), a list of names/globs, or a predicate ``fn(name) -> bool``. A
    TransformerLens name resolves through its alias. Unknown names raise InputError."""
    all_names = list(all_names)
    if names is None:
        return list(default) if default is not None else all_names
    if callable(names):
        return [n for n in all_names if names(n)]
    if isinstance(names, str):
        names = [names]
    known = set(all_names)
    chosen: list[str] = []
    for pattern in names:
        if not isinstance(pattern, str):
            raise InputError(f"hook names must be strings, got {type(pattern).__name__}")
        given = pattern
        if pattern not in known:
            pattern = resolve_alias(pattern)  # TransformerLens's name, or the pattern unchanged
        hits = [n for n in all_names if fnmatch.fnmatchcase(n, pattern)] if any(c in pattern for c in "*?[") else (
            [pattern] if pattern in known else []
        )
        if not hits:
            close = [n for n in all_names if pattern.split(".")[-1] in n][:5]
            hint = f"; similar names: {', '.join(close)}" if close else ""
            hint += unknown_alias_hint(given)
            raise InputError(f"no hook point named {given!r}{hint} (model.hook_names() lists them all)")
        chosen += [h for h in hits if h not in chosen]
    return chosen


class HookCache(dict):
    """What ``run_with_cache`` returns: a dict hook name -> activation (and ``name + "_grad"`` -> gradient
    with ``grads=True``) that also answers to TransformerLens's names (``blocks.0.attn.hook_pattern``)."""

    def __missing__(self, name):
        alias = resolve_alias(name)
        if alias != name and isinstance(alias, str) and dict.__contains__(self, alias):
            return dict.__getitem__(self, alias)
        raise KeyError(name)

    def __contains__(self, name) -> bool:
        if dict.__contains__(self, name):
            return True
        alias = resolve_alias(name)
        return isinstance(alias, str) and dict.__contains__(self, alias)


def _require_grad(x: torch.Tensor) -> torch.Tensor:
    """``x`` itself when autograd tracks it, else the same values as a new leaf that does (frozen weights:
    nothing upstream needs a gradient, so cutting the graph there loses nothing)."""
    return x if x.requires_grad else x.detach().requires_grad_(True)


class HookedMixin:
    """Adds ``hook_names``, ``hooks`` and ``run_with_cache`` to a module tree that contains hook points."""

    _hook_points: dict[str, HookPoint]

    def setup_hooks(self) -> None:
        self._hook_points = name_hook_points(self)  # type: ignore[arg-type]

    def hook_names(self, optional: bool = False) -> list[str]:
        """Every hook point's name, in the order the forward pass reaches them. ``optional=True`` adds the
        hook points a forward computes only on request (``attn.result``, ``attn.q_input``, ...)."""
        return [n for n, p in self._hook_points.items() if optional or not p.optional]

    def default_hook_names(self) -> list[str]:
        """What ``run_with_cache()`` without ``names=`` caches: every hook point, the optional ones only
        where ``set_use_attn_result`` / ``set_use_split_qkv_input`` switched them on."""
        return [n for n, p in self._hook_points.items() if p.in_default]

    def hook_point(self, name: str) -> HookPoint:
        return self._hook_points[match_names(name, self._hook_points)[0]]

    def _set_optional(self, suffixes: tuple[str, ...], on: bool) -> None:
        for name, point in self._hook_points.items():
            if point.optional and name.endswith(suffixes):
                point.in_default = bool(on)

    def set_use_attn_result(self, on: bool = True) -> None:
        """Cache each head's write into the residual stream, ``attn.result`` [batch, pos, heads, d_model],
        in every ``run_with_cache()`` (TransformerLens's option of the same name). Hooking it by name
        computes it without this switch."""
        self._set_optional((".attn.result", ".cross_attn.result"), on)

    def set_use_split_qkv_input(self, on: bool = True) -> None:
        """Cache the per-head inputs of W_Q, W_K, W_V (``attn.q_input``, ``k_input``, ``v_input``,
        [batch, pos, heads, d_model]) in every ``run_with_cache()``; hooking them by name works without it."""
        self._set_optional(("q_input", "k_input", "v_input"), on)

    @contextlib.contextmanager
    def hooks(self, fns: HookSpec = (), *, backward: HookSpec = ()) -> Iterator[None]:
        """Attach hook functions for the duration of a ``with`` block.

        ``fns`` maps a hook name (or glob, or list) to ``fn(activation, hook)``; returning a tensor from
        ``fn`` replaces the activation. ``backward`` maps names to ``fn(grad, hook)``, called with the
        gradient of whatever ``.backward()`` runs inside the block with respect to that activation;
        returning a tensor replaces the gradient flowing further back. Hooks are removed on exit, even on error.
        """
        attached: list[tuple[HookPoint, HookFn]] = []
        try:
            for spec, wrap in ((fns, None), (backward, _backward_hook)):
                for pattern, fn in (spec.items() if isinstance(spec, dict) else spec):
                    for name in match_names(pattern, self._hook_points):
                        point = self._hook_points[name]
                        hook = fn if wrap is None else wrap(fn)
                        point.fns.append(hook)
                        attached.append((point, hook))
            yield
        finally:
            for point, fn in attached:
                point.fns.remove(fn)

    def run_with_cache(
        self, *args, names: NameFilter = None, detach: bool = True, grads: bool = False,
        metric: Callable[[torch.Tensor], torch.Tensor] | None = None, incl_bwd: bool = False, **kwargs
    ) -> tuple[torch.Tensor, HookCache]:
        """Run the forward pass and return ``(output, cache)``, cache mapping each chosen hook name to its
        activation. Only the chosen hook points are hooked, so the rest of the pass runs as fast as usual
        (attention stays fused unless its ``scores`` or ``pattern`` is asked for).

        ``grads=True`` also backpropagates ``metric(output)`` (a scalar; without ``metric`` the output
        itself, e.g. ``return_type="loss"``) and stores ``d metric / d activation`` as ``name + "_grad"``
        (TransformerLens's key), same shape as the activation. Weights' ``.grad`` are left untouched.
        ``incl_bwd=True`` is TransformerLens's spelling of ``grads=True``.
        """
        grads = grads or incl_bwd
        cache = HookCache()
        chosen = match_names(names, self._hook_points, self.default_hook_names())
        if not grads:
            def store(x: torch.Tensor, hook: HookPoint) -> None:
                cache[hook.name] = x.detach() if detach else x

            with self.hooks([(name, store) for name in chosen]):
                out = self(*args, **kwargs)  # type: ignore[operator]
            return out, HookCache({n: cache[n] for n in self._hook_points if n in cache})

        live: dict[str, torch.Tensor] = {}

        def store_live(x: torch.Tensor, hook: HookPoint) -> torch.Tensor:
            x = _require_grad(x)
            live[hook.name] = x
            return x

        with torch.enable_grad(), self.hooks([(name, store_live) for name in chosen]):
            out = self(*args, **kwargs)  # type: ignore[operator]
            scalar = metric(out) if metric is not None else out
            if not isinstance(scalar, torch.Tensor) or scalar.numel() != 1:
                raise InputError("grads=True backpropagates one number: pass metric=fn(output) -> scalar, or "
                                 f"return_type='loss'; got {getattr(scalar, 'shape', type(scalar).__name__)}")
            order = [n for n in self._hook_points if n in live]
            gradients = torch.autograd.grad(scalar, [live[n] for n in order], allow_unused=True)
        for name, g in zip(order, gradients):
            cache[name] = live[name].detach()
            cache[name + GRAD_SUFFIX] = torch.zeros_like(cache[name]) if g is None else g.detach()
        detached = out.detach() if isinstance(out, torch.Tensor) else type(out)(o.detach() for o in out)  # (logits, loss)
        return detached, cache


def _backward_hook(fn: HookFn) -> HookFn:
    """A forward hook that registers ``fn`` on the activation's gradient (the activation made to require
    one when autograd is on)."""

    def forward_fn(x: torch.Tensor, point: HookPoint) -> torch.Tensor | None:
        if not torch.is_grad_enabled():
            return None
        x = _require_grad(x)

        def on_grad(grad: torch.Tensor) -> torch.Tensor | None:
            out = fn(grad, point)
            if out is not None and (not isinstance(out, torch.Tensor) or out.shape != grad.shape):
                raise InputError(f"backward hook on {point.name!r} must return None or a tensor of shape "
                                 f"{tuple(grad.shape)}, got {getattr(out, 'shape', type(out).__name__)}")
            return out

        x.register_hook(on_grad)
        return x

    return forward_fn
