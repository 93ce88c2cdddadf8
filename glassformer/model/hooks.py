"""Hook points: a named place in the forward pass where an activation can be read or replaced.

Every intermediate of a :class:`~glassformer.Transformer` passes through a :class:`HookPoint`, an identity
module. Its *name* is its path in the module tree (``blocks.0.attn.pattern``); a hook point attribute called
``output`` is named after the module that owns it (a norm's output is ``blocks.0.ln1``, not
``blocks.0.ln1.output``).

A hook is a function ``fn(activation, hook) -> None | Tensor``: returning a tensor replaces the activation.
With no hook attached a hook point costs one attribute test.
"""

from __future__ import annotations

import contextlib
import fnmatch
from collections.abc import Callable, Iterable, Iterator
from typing import Union

import torch
from torch import nn

from glassformer.errors import InputError

HookFn = Callable[[torch.Tensor, "HookPoint"], Union[torch.Tensor, None]]
NameFilter = Union[None, str, Iterable[str], Callable[[str], bool]]


class HookPoint(nn.Module):
    """Identity on the forward pass, with a list of hook functions that may read or replace its input."""

    def __init__(self) -> None:
        super().__init__()
        self.name: str = ""
        self.fns: list[HookFn] = []

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
        return repr(self.name)


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


def match_names(names: NameFilter, all_names: Iterable[str]) -> list[str]:
    """Resolve a name filter to hook names: ``None`` = all, a name or glob (``blocks.*.attn.pattern``),
    a list of names/globs, or a predicate ``fn(name) -> bool``. Unknown names raise InputError."""
    all_names = list(all_names)
    if names is None:
        return all_names
    if callable(names):
        return [n for n in all_names if names(n)]
    if isinstance(names, str):
        names = [names]
    chosen: list[str] = []
    for pattern in names:
        hits = [n for n in all_names if fnmatch.fnmatchcase(n, pattern)] if any(c in pattern for c in "*?[") else (
            [pattern] if pattern in all_names else []
        )
        if not hits:
            close = [n for n in all_names if pattern.split(".")[-1] in n][:5]
            hint = f"; similar names: {', '.join(close)}" if close else ""
            raise InputError(f"no hook point named {pattern!r}{hint} (model.hook_names() lists them all)")
        chosen += [h for h in hits if h not in chosen]
    return chosen


class HookedMixin:
    """Adds ``hook_names``, ``hooks`` and ``run_with_cache`` to a module tree that contains hook points."""

    _hook_points: dict[str, HookPoint]

    def setup_hooks(self) -> None:
        self._hook_points = name_hook_points(self)  # type: ignore[arg-type]

    def hook_names(self) -> list[str]:
        """Every hook point's name, in the order the forward pass reaches them."""
        return list(self._hook_points)

    def hook_point(self, name: str) -> HookPoint:
        return self._hook_points[match_names(name, self._hook_points)[0]]

    @contextlib.contextmanager
    def hooks(self, fns: dict[str, HookFn] | Iterable[tuple[str, HookFn]]) -> Iterator[None]:
        """Attach hook functions for the duration of a ``with`` block.

        ``fns`` maps a hook name (or glob, or list) to ``fn(activation, hook)``; returning a tensor from
        ``fn`` replaces the activation. Hooks are removed on exit, even on error.
        """
        items = fns.items() if isinstance(fns, dict) else fns
        attached: list[tuple[HookPoint, HookFn]] = []
        try:
            for pattern, fn in items:
                for name in match_names(pattern, self._hook_points):
                    point = self._hook_points[name]
                    point.fns.append(fn)
                    attached.append((point, fn))
            yield
        finally:
            for point, fn in attached:
                point.fns.remove(fn)

    def run_with_cache(
        self, *args, names: NameFilter = None, detach: bool = True, **kwargs
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Run the forward pass and return ``(output, cache)``, cache mapping each chosen hook name to its
        activation. Only the chosen hook points are hooked, so the rest of the pass runs as fast as usual
        (attention stays fused unless its ``scores`` or ``pattern`` is asked for)."""
        cache: dict[str, torch.Tensor] = {}

        def store(x: torch.Tensor, hook: HookPoint) -> None:
            cache[hook.name] = x.detach() if detach else x

        chosen = match_names(names, self._hook_points)
        with self.hooks([(name, store) for name in chosen]):
            out = self(*args, **kwargs)  # type: ignore[operator]
        ordered = {n: cache[n] for n in self._hook_points if n in cache}
        return out, ordered
