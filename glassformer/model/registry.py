"""The allowed values of every categorical ``ModelConfig`` field, filled in by the components themselves.

Each component module registers the names of its registry when it is imported (``norms.py`` its
``NORMS``, ``patterns/__init__.py`` its ``PATTERNS``, ...), so ``CHOICES`` is derived from the registries
and a new variant becomes a valid config value by being registered where it is written. Importing
``glassformer.model`` imports every component (through ``Transformer``), so the table is complete before
any config is checked. This module imports nothing: the config reads it without depending on the
components, and the components write it without depending on the config.
"""

from __future__ import annotations

from collections.abc import Iterable

CHOICES: dict[str, tuple[str, ...]] = {"arch": ("decoder", "encoder", "encoder-decoder")}  # the three shapes


def register(field: str, names: Iterable[str]) -> None:
    """Allow ``names`` (e.g. the keys of ``PATTERNS``) as values of the config field ``field``, in order."""
    CHOICES[field] = tuple(dict.fromkeys((*CHOICES.get(field, ()), *names)))
