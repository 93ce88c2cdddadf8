"""Experiments: questions about transformers answered by running them (``glassformer experiment NAME``).

Each experiment is a module in this package that defines

    NAME: str              the command-line name, e.g. "induction-heads"
    DESCRIPTION: str       one line: the question it answers
    def run(out: Path, *, quick: bool = False, seed: int = 0, full: bool = False) -> ExperimentResult

The default settings answer the question in under a minute on two CPU cores; ``quick=True`` is the reduced
version the tests run (seconds); ``full=True`` (``--full``) runs longer, larger or over more seeds, where
an experiment has more to show. A run is reproducible from its seed (same numbers when run twice). ``run`` writes its
figures into ``out``; :func:`run_experiment` adds ``finding.md`` (the short text of what it found) and
``metrics.json``. Modules are discovered automatically: adding a file adds an experiment.
"""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from glassformer.errors import InputError


@dataclass
class ExperimentResult:
    finding: str  # a few sentences: what the experiment showed, with the numbers
    metrics: dict = field(default_factory=dict)  # JSON-serialisable numbers the finding rests on
    figures: list[Path] = field(default_factory=list)  # files written into the output folder


def registry() -> dict[str, ModuleType]:
    """Every experiment module in this package, by its NAME."""
    found = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "NAME") and hasattr(module, "run"):
            found[module.NAME] = module
    return dict(sorted(found.items()))


def run_experiment(name: str, out: str | Path, *, quick: bool = False, seed: int = 0, full: bool = False) -> ExperimentResult:
    """Run experiment ``name``, writing its figures, ``finding.md`` and ``metrics.json`` into ``out``."""
    experiments = registry()
    if name not in experiments:
        raise InputError(f"no experiment named {name!r}; available: {', '.join(experiments)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if quick and full:
        raise InputError("choose --quick or --full, not both")
    module = experiments[name]
    has_full = "full" in inspect.signature(module.run).parameters
    result = module.run(out, quick=quick, seed=seed, **({"full": full} if has_full else {}))
    seconds = time.perf_counter() - start
    (out / "finding.md").write_text(f"# {name}\n\n{experiments[name].DESCRIPTION}\n\n{result.finding}\n")
    metrics = {**result.metrics, "seconds": round(seconds, 2), "seed": seed, "quick": quick, "full": full and has_full}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float) + "\n")
    return result
