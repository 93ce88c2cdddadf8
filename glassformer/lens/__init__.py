"""The lens: look inside any glassformer model (trained, compiled or imported).

    from glassformer import lens
    logits, cache = lens.run_with_cache(model, tokens)          # an ActivationCache
    resid, labels = cache.decompose_resid(heads=True)          # embed, pos_embed, L0H0, ..., L1_mlp
    lens.logit_lens(model, tokens).top_k(5)                     # predictions after every layer
    lens.direct_logit_attribution(model, cache, answer, wrong)  # each head's share of a logit difference
    lens.detect_heads(model, tokens)["induction"]               # [layers, heads] scores
    lens.induction_scores(model).scores                         # induction over several repeat lengths
    lens.pattern_score(pattern, selector)                       # a head vs any [query, key] pattern
    lens.patch_heads(model, clean, corrupted, metric).plot("patching.png")
    lens.composition_scores(model, "k"), lens.ov_circuit(model, 1)[h].svd()
    lens.fold_weights(model)                                    # a folded copy, same log-probs

Model inputs are a token tensor, or a mapping ``{"tokens": ..., "src": ...}`` for an encoder-decoder.
Functions that take ``stack=`` read the main stack by default, ``stack="encoder"`` an encoder-decoder's
encoder. Nothing here changes a model's weights in place.
"""

from glassformer.lens.attribution import Attribution, direct_logit_attribution, logit_direction
from glassformer.lens.cache import ActivationCache, ResidStack, run_with_cache
from glassformer.lens.circuits import (
    FactoredMatrix,
    OVDirection,
    composition_scores,
    copying_score,
    full_ov_circuit,
    full_qk_circuit,
    ov_circuit,
    ov_svd,
    qk_circuit,
)
from glassformer.lens.detectors import (
    attention_patterns,
    detect_heads,
    duplicate_token_reference,
    first_token_reference,
    induction_reference,
    pattern_score,
    previous_token_reference,
    repeated_random_tokens,
)
from glassformer.lens.folding import fold_weights
from glassformer.lens.induction import InductionScores, induction_probe, induction_scores
from glassformer.lens.interventions import (
    PatchResult,
    ablate,
    ablation_hooks,
    logit_diff_metric,
    patch_heads,
    patch_layers_positions,
    run_ablated,
)
from glassformer.lens.logit_lens import LensResult, logit_lens, unembed_resid
from glassformer.lens.tuned_lens import TunedLens, train_tuned_lens, tuned_lens

__all__ = [
    "ActivationCache", "Attribution", "FactoredMatrix", "LensResult", "OVDirection", "PatchResult", "ResidStack",
    "TunedLens", "ablate", "ablation_hooks", "attention_patterns", "composition_scores", "copying_score",
    "detect_heads", "direct_logit_attribution", "duplicate_token_reference", "first_token_reference",
    "fold_weights", "full_ov_circuit", "InductionScores", "induction_probe", "induction_scores", "full_qk_circuit", "induction_reference", "logit_diff_metric",
    "logit_direction", "logit_lens", "ov_circuit", "ov_svd", "patch_heads", "patch_layers_positions",
    "pattern_score", "previous_token_reference", "qk_circuit", "repeated_random_tokens", "run_ablated",
    "run_with_cache", "train_tuned_lens", "tuned_lens", "unembed_resid",
]
