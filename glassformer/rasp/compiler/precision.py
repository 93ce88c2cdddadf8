"""Sharpness: choose every head's softmax sharpness beta so that the model is exact, or refuse.

Attention is the only approximate part: softmax leaves a little weight off the selected keys.  MLPs
built by ``mlp.py`` are exact as long as each input is within a *tolerance* of a value in its set (a
quarter of the gap to the next threshold, or a quarter of a one-hot), and they write exact values.

Backward, from the output to the inputs, each node gets the error it may carry, tau:

    output               0.45 of the gap between output values (numerical: decoding snaps) or 1/4
                         (categorical)
    read by an MLP       that MLP's tolerance for it
    a head's value       tau(head) / 4
    a head's keys/query  a share of sigma_max(head), the score error the head tolerates:
                         gap/8, and for mean / width heads also tau / (10 beta scale) since uneven
                         scores bias a mean

and each head's beta is fixed so that the leaked weight costs at most tau/4:
(N + 2) exp(-0.75 beta gap) * scale <= tau / 4.  Forward, every node's actual error is computed (value
error + leak + score bias + float32 rounding) and checked against tau; a failure raises
:class:`RaspCompileError` naming the operation.

A SelectorWidth head writes 1/(w+1); its neighbours differ by a factor (w+2)/(w+1), so its error is
measured *relative* to its value (the decoding MLP reports a relative tolerance) -- the bounds below,
with value scale 1, are relative bounds for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from glassformer.rasp.compiler.assign import Assignment
from glassformer.rasp.compiler.attention import HeadSpec, leak_bound
from glassformer.rasp.compiler.mlp import MLPSpec
from glassformer.rasp.compiler.values import ValueSet
from glassformer.rasp.errors import RaspCompileError

CATEGORICAL_OUTPUT_TOLERANCE = 0.25  # argmax stays right while the one-hot is off by < 1/4 (None logit: 1/2)


@dataclass
class Precision:
    tolerance: dict[str, float] = field(default_factory=dict)  # tau per materialized node
    error: dict[str, float] = field(default_factory=dict)  # the bound on its actual error
    sigma_max: dict[str, float] = field(default_factory=dict)


def output_tolerance(values: ValueSet, numerical: bool) -> float:
    if not numerical:
        return CATEGORICAL_OUTPUT_TOLERANCE
    if values.finite and len(values.non_none) > 1:  # decoding snaps to the nearest value
        vs = sorted(float(v) for v in values.non_none)
        return min(b - a for a, b in zip(vs, vs[1:])) * 0.45
    return 1e-5 * max(1.0, values.magnitude)


def float_error(spec: HeadSpec, noisy_scores: bool, eps: float) -> float:
    """float32 rounding: a few ulps in the softmax and the weighted sum of values.  Exact query and key
    inputs give every selected key bit-identical scores (one product of exact weights per clause);
    noisy ones can differ by rounding of scores of size beta * (2L + 2), which biases a mean."""
    uneven = 0.0
    if noisy_scores and spec.mode in ("mean", "width"):
        uneven = min(1.0, 2 * eps * spec.beta * (2 * spec.n_clauses + 2))
    return spec.value_scale * (8 * eps + uneven)


def _bias_factor(h: HeadSpec) -> float:
    """Selected keys' scores within +-sigma: a mean's weights differ by up to exp(2 beta sigma); the
    weight left on BOS (width) by up to exp(beta sigma), relatively."""
    return 1.0 if h.mode == "width" else 2.0


def _noisy_scores(h: HeadSpec, noisy: set[str]) -> bool:
    return any(label in noisy for label in h.score_inputs)


def choose_sharpness(plan: Assignment, mlps: dict[str, MLPSpec], heads: dict[str, HeadSpec],
                     noisy: set[str], max_len: int, eps: float) -> Precision:
    """Set every head's beta and check every node's error bound (machine epsilon ``eps``)."""
    n_keys = max_len + 1
    order = plan.materialized
    readers: dict[str, list[tuple[str, str]]] = {n.label: [] for n in plan.materialized}
    for n in plan.materialized:
        if n.label in mlps:
            for i in mlps[n.label].tolerance:
                readers[i].append((n.label, "mlp"))
            for i in mlps[n.label].passthrough:
                readers[i].append((n.label, "pass"))
        if n.label in heads:
            for i in heads[n.label].score_inputs:
                readers[i].append((n.label, "score"))
            for i in heads[n.label].value_inputs:
                readers[i].append((n.label, "value"))
    out = plan.graph.output
    prec = Precision()

    for node in reversed(order):  # backward: tolerances, betas
        label = node.label
        tau = math.inf
        if node is out:
            tau = output_tolerance(plan.values[label], node.is_numerical)
        for reader, role in readers.get(label, []):
            if role == "mlp":
                tau = min(tau, mlps[reader].tolerance[label])
            elif role == "pass":
                spec = mlps[reader]
                total = sum(spec.passthrough.values())
                tau = min(tau, prec.tolerance[reader] / max(total, 1e-30))
            elif role == "score":
                h = heads[reader]  # sigma = sum_i w_i err_i <= sigma_max when each err_i <= sigma_max / sum w
                tau = min(tau, prec.sigma_max[reader] / sum(h.score_inputs.values()))
            elif heads[reader].value_inputs[label]:  # weight 0 (a value that is 0 for every input): unconstrained
                tau = min(tau, prec.tolerance[reader] / (4.0 * heads[reader].value_inputs[label]))
        if label in heads:
            h = heads[label]
            tau = min(tau, 0.25 * h.value_scale)
            h.beta = max(1.0, math.log(4.0 * (n_keys + 1) * h.value_scale / tau) / (0.75 * h.gap))
            sigma = h.gap / 8.0
            if h.mode in ("mean", "width"):  # the score bias below stays under tau / 4
                sigma = min(sigma, math.log1p(tau / (4.0 * h.value_scale)) / (_bias_factor(h) * h.beta))
            prec.sigma_max[label] = sigma
        prec.tolerance[label] = tau

    for node in order:  # forward: actual errors
        label = node.label
        if label in mlps:
            spec = mlps[label]
            err = sum(a * prec.error[i] for i, a in spec.passthrough.items()) + spec.float_error
            for i, tol in spec.tolerance.items():
                if prec.error[i] > tol * (1 + 1e-9):
                    raise RaspCompileError(label, f"its input {i} carries error {prec.error[i]:.3g} but the MLP "
                                                  f"tolerates only {tol:.3g}")
        elif label in heads:
            h = heads[label]
            sigma = sum(w * prec.error[i] for i, w in h.score_inputs.items())
            leak = leak_bound(h, n_keys, sigma)
            bias = math.expm1(_bias_factor(h) * h.beta * sigma) * h.value_scale if h.mode in ("mean", "width") else 0.0
            v_err = sum(w * prec.error[i] for i, w in h.value_inputs.items())
            err = v_err + leak * h.value_scale + bias + float_error(h, _noisy_scores(h, noisy), eps)
        else:
            err = 0.0
        tau = prec.tolerance[label]
        if err > tau * (1 + 1e-9):
            rounding = float_error(heads[label], _noisy_scores(heads[label], noisy), eps) if label in heads else (
                mlps[label].float_error if label in mlps else 0.0)
            if rounding > tau / 2 or err - rounding <= tau:
                raise RaspCompileError(
                    label, f"it must be exact to within {tau:.3g}, but rounding in the model's dtype alone costs "
                           f"~{rounding:.3g}; the values involved are too close together (use a wider dtype, a smaller "
                           "max_len or coarser values)", float_limited=True)
            raise RaspCompileError(label, f"its error bound {err:.3g} exceeds the {tau:.3g} its readers tolerate "
                                          "(the attention cannot be made sharp enough)")
        prec.error[label] = err
    return prec
