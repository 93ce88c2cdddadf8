"""The explorer: any glassformer model, live in the browser (``glassformer explore RUN|CONFIG``).

* :mod:`~glassformer.explorer.session`: the model being explored (trained, compiled, imported, random).
* :mod:`~glassformer.explorer.analysis`: one forward pass per interaction feeding every view (lens maths).
* :mod:`~glassformer.explorer.forward_path`: the ``explain`` trace as a clickable path of equations.
* :mod:`~glassformer.explorer.sampling`: token-by-token sampling with the KV cache.
* :mod:`~glassformer.explorer.program`: a compiled model's RASP program and its s-ops' values.
* :mod:`~glassformer.explorer.api`: the JSON API as Python (:class:`Explorer`), used by the server and scripts.
* :mod:`~glassformer.explorer.server`: the Starlette app and ``serve()`` (uvicorn), static assets in ``static/``.
"""

__all__ = ["Explorer", "RequestError", "Subject", "load_subject", "subject_of"]


def __getattr__(name):  # imported on first use, so `glassformer --help` does not load the explorer's dependencies
    if name in ("Explorer", "RequestError"):
        from glassformer.explorer import api

        return getattr(api, name)
    if name in ("Subject", "load_subject", "subject_of"):
        from glassformer.explorer import session

        return getattr(session, name)
    raise AttributeError(f"module 'glassformer.explorer' has no attribute {name!r}")
