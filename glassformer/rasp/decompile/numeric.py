"""Numerical functions the decompiled program may print where a lookup table would not generalise: a
linear arg-max (the unembedding's own form) and a small decision tree, over the numbers in one or two
quantities (fractions, means, counts, indices), with their fits to the model's answers.

    LinearArgmax: classes[argmax_c (W_c . x + b_c)]      (multinomial logistic regression)
    Tree:         nested  x[i] <= t  tests, a class at each leaf (Gini splits, <= 3 levels)

Both answer for value combinations the fitting sample never held; both print as a dict / a lambda that
``glassformer rasp run`` loads.
"""

from __future__ import annotations

from numbers import Real
from typing import Any

import numpy as np
import torch

def as_vector(v: Any) -> tuple | None:
    """A number or a (nested) tuple of numbers as a flat tuple of floats; None otherwise."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, Real):
        return (float(v),)
    if isinstance(v, tuple):
        out: tuple = ()
        for x in v:
            part = as_vector(x)
            if part is None:
                return None
            out += part
        return out
    return None


def numeric_matrix(columns: list[list]) -> np.ndarray | None:
    """``[rows, dims]``: the features' values side by side, if every value is numerical (one width each)."""
    parts = []
    for col in columns:
        vecs = [as_vector(v) for v in col]
        if any(v is None for v in vecs) or len({len(v) for v in vecs}) != 1:
            return None
        parts.append(np.array(vecs, dtype=np.float64))
    return np.concatenate(parts, 1)


class LinearArgmax:
    """``classes[argmax_c (W_c . x + b_c)]`` of the numbers in the inputs (a linear read-out, the
    unembedding's own form), printed as a dict ``{class: (W_c, b_c)}`` and a lambda."""

    def __init__(self, name: str, weights: dict, arity: int = 1):
        self.name, self.weights, self.arity = name, weights, arity

    def __call__(self, *args):
        x = as_vector(tuple(args))
        if x is None:
            return None
        return max(self.weights, key=lambda c: sum(w * v for w, v in zip(self.weights[c][0], x)) + self.weights[c][1])

    @property
    def source(self) -> str:
        flat = {1: "(x if isinstance(x, tuple) else (x,))",
                2: "(x if isinstance(x, tuple) else (x,)) + (y if isinstance(y, tuple) else (y,))"}[self.arity]
        args = "x" if self.arity == 1 else "x, y"
        return (f"lambda {args}: max({self.name}, key=lambda c: sum(w * v for w, v in zip({self.name}[c][0], "
                f"{flat})) + {self.name}[c][1])")

    def definition(self) -> str:
        items = ", ".join(f"{c!r}: ({[round(w, 4) for w in wb[0]]!r}, {round(wb[1], 4)!r})"
                          for c, wb in self.weights.items())
        return f"{self.name} = {{{items}}}"


def fit_linear(X: np.ndarray, target: list, train: np.ndarray, steps: int = 200) -> tuple[dict, float] | None:
    """Multinomial logistic regression of ``target`` on ``X`` (fitted on ``train`` rows, weights rounded
    to 4 digits as printed): ``({class: (W_c, b_c)}, held-out accuracy)``."""
    classes = sorted({t for t in target}, key=repr)
    if len(classes) < 2 or train.sum() < 2:
        return None
    index = {c: i for i, c in enumerate(classes)}
    y = torch.tensor([index[t] for t in target])
    mu, sd = X[train].mean(0), X[train].std(0) + 1e-6
    Xt = torch.tensor((X - mu) / sd, dtype=torch.float64)  # standardised: the fit converges in few steps
    W = torch.zeros(X.shape[1], len(classes), dtype=torch.float64, requires_grad=True)
    b = torch.zeros(len(classes), dtype=torch.float64, requires_grad=True)
    tr = torch.tensor(train)
    opt = torch.optim.LBFGS([W, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(Xt[tr] @ W + b, y[tr]) + 1e-4 * (W ** 2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    W_raw = W.detach().numpy() / sd[:, None]  # back to the raw features: W' = W / sd, b' = b - mu . W'
    b_raw = b.detach().numpy() - mu @ W_raw
    weights = {c: ([float(round(w, 4)) for w in W_raw[:, i]], float(round(b_raw[i], 4))) for c, i in index.items()}
    fn = LinearArgmax("_", weights)
    pred = [fn(tuple(row)) for row in X]
    test = np.flatnonzero(~train)
    acc = float(np.mean([pred[i] == target[i] for i in test])) if len(test) else 1.0
    return weights, acc


class Tree:
    """A small decision tree over the numbers in the inputs: ``(dim, threshold, left, right)`` nodes
    (``x[dim] <= threshold`` goes left) and output values at the leaves, printed as one conditional
    expression."""

    def __init__(self, name: str, node, arity: int = 1):
        self.name, self.node, self.arity = name, node, arity

    def __call__(self, *args):
        x = as_vector(tuple(args))
        if x is None:
            return None
        node = self.node
        while isinstance(node, tuple) and len(node) == 4 and isinstance(node[0], int) and node[0] >= 0:
            node = node[2] if x[node[0]] <= node[1] else node[3]
        return node[1] if isinstance(node, tuple) else node

    def _expr(self, node) -> str:
        if node[0] < 0:
            return repr(node[1])
        dim, thr, left, right = node
        return f"({self._expr(left)} if v[{dim}] <= {thr!r} else {self._expr(right)})"

    @property
    def source(self) -> str:
        flat = {1: "(x if isinstance(x, tuple) else (x,))",
                2: "(x if isinstance(x, tuple) else (x,)) + (y if isinstance(y, tuple) else (y,))"}[self.arity]
        args = "x" if self.arity == 1 else "x, y"
        return f"lambda {args}: (lambda v: {self._expr(self.node)})({flat})"


def fit_tree(X: np.ndarray, target: list, train: np.ndarray, max_depth: int = 3,
             min_leaf: int = 3) -> tuple[tuple, float] | None:
    """A decision tree (Gini splits, at most ``max_depth`` levels, thresholds halfway between two seen
    values) of ``target`` on ``X``, fitted on ``train`` rows: ``(root node, held-out accuracy)``.  A leaf
    is ``(-1, value)``."""
    classes = sorted({t for t in target}, key=repr)
    if len(classes) < 2 or train.sum() < 2 * min_leaf:
        return None
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[t] for t in target])

    def leaf(idx):
        return (-1, classes[int(np.bincount(y[idx], minlength=len(classes)).argmax())])

    def grow(idx, depth):
        counts = np.bincount(y[idx], minlength=len(classes))
        if depth == max_depth or counts.max() == len(idx) or len(idx) < 2 * min_leaf:
            return leaf(idx)
        best = None
        for d in range(X.shape[1]):
            order = idx[np.argsort(X[idx, d], kind="stable")]
            xs = X[order, d]
            onehot = np.eye(len(classes))[y[order]]  # [n, classes]
            left = np.cumsum(onehot, 0)[:-1]  # [n - 1, classes] counts left of each cut
            right = counts[None, :] - left
            nl = np.arange(1, len(order))[:, None]
            nr = len(order) - nl
            gini = (nl[:, 0] * (1 - ((left / nl) ** 2).sum(1)) + nr[:, 0] * (1 - ((right / nr) ** 2).sum(1)))
            valid = (xs[1:] > xs[:-1]) & (nl[:, 0] >= min_leaf) & (nr[:, 0] >= min_leaf)
            if not valid.any():
                continue
            gini = np.where(valid, gini, np.inf)
            i = int(gini.argmin())
            if best is None or gini[i] < best[0] - 1e-12:
                best = (gini[i], d, float(round((xs[i] + xs[i + 1]) / 2, 6)))
        parent = len(idx) * (1 - ((counts / len(idx)) ** 2).sum())
        if best is None or best[0] >= parent - 1e-9:
            return leaf(idx)
        _, d, thr = best
        go_left = X[idx, d] <= thr
        left, right = grow(idx[go_left], depth + 1), grow(idx[~go_left], depth + 1)
        if left[0] < 0 and right[0] < 0 and left[1] == right[1]:
            return left  # both sides answer the same: no split
        return (d, thr, left, right)

    root = grow(np.flatnonzero(train), 0)
    fn = Tree("_", root)
    test = np.flatnonzero(~train)
    acc = float(np.mean([fn(tuple(X[i])) == target[i] for i in test])) if len(test) else 1.0
    return root, acc
