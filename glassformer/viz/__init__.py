"""Pictures of what happens inside a model, drawn with matplotlib's object API (no pyplot, no global
backend change), saved as PNG or SVG:

* ``attention.py``  -- attention maps, one panel per head (the training demo's plot)
* ``patterns.py``   -- one head, all heads of a layer, and the token-by-token view of one query
* ``lens_plots.py`` -- logit-lens grids, heat maps (patching, detector scores), attribution bars, curves
* ``html.py``       -- figures as inline data URIs and the pieces of a self-contained HTML page
"""
