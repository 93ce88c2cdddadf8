"""Explain: the math made visible.

* :func:`trace` / ``glassformer explain``: one forward pass written out equation by equation, with the
  model's own numbers (Markdown or self-contained HTML).
* :mod:`~glassformer.explain.reference`: the forward pass of all three architectures in NumPy, one
  function per equation, equal to the model in float64.
* :mod:`~glassformer.explain.gradients`: hand-derived backward passes, equal to autograd.
* :func:`diagram` / ``glassformer diagram``: an SVG of the architecture, drawn from the config.
* :mod:`~glassformer.explain.experiments`: learners' questions answered by running models.
"""

from glassformer.explain.diagram import diagram, save_diagram
from glassformer.explain.document import Trace
from glassformer.explain.trace import trace

__all__ = ["Trace", "diagram", "save_diagram", "trace"]
