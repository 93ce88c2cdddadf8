"""Explain: the math made visible.

* :func:`trace` / ``glassformer explain``: one forward pass written out equation by equation, with the
  model's own numbers (data, Markdown or self-contained HTML), for every variant: each component gives
  its own equation (``describe()``).
* :mod:`~glassformer.explain.reference`: the forward pass of all three architectures and every variant in
  NumPy, one function per equation, equal to the model in float64.
* :mod:`~glassformer.explain.gradients`: hand-derived backward passes, equal to autograd.
* :func:`diagram` / ``glassformer diagram``: an SVG of the architecture, drawn from the model's modules.
* :mod:`~glassformer.explain.experiments`: learners' questions answered by running models.
"""

from glassformer.explain.diagram import diagram, save_diagram
from glassformer.explain.document import Trace
from glassformer.explain.trace import trace

__all__ = ["Trace", "diagram", "save_diagram", "trace"]
