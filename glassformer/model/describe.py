"""What a component says about itself, so the tools outside ``model/`` need not know the variants.

Every component of the model (embeddings, positional schemes, norms, attention patterns, MLPs, the
unembedding) has a method ``describe() -> Description``: the explain trace prints its equations and
text, the diagram draws its title and detail, and the lens reads what its attention pattern means.
A new variant is then one new component (with its ``describe``) plus its tests; ``explain/`` and
``lens/`` learn about it from the module tree of a built model, not from the config's strings.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class Description:
    """One component, as the tools show it.

    title:     a short name ("RMSNorm", "Sliding-window self-attention")
    equations: LaTeX, in forward order (what the explain trace writes out)
    text:      one or two sentences for a reader (the trace's caption)
    detail:    the diagram node's second line: sizes and settings ("[d_vocab=64, d_model=32]")
    """

    title: str
    equations: tuple[str, ...] = ()
    text: str = ""
    detail: str = ""


def describe(module: nn.Module | None) -> Description | None:
    """``module.describe()``, or a description read from its class (name and the docstring's first line)
    when the component has none: a new module still shows up, with its own words."""
    if module is None:
        return None
    own = getattr(module, "describe", None)
    if callable(own):
        return own()
    doc = (type(module).__doc__ or "").strip().splitlines()
    return Description(type(module).__name__, text=doc[0] if doc else "")
