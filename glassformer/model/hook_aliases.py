"""TransformerLens's hook names, read as glassformer's.

TransformerLens (``HookedTransformer``) prefixes each hook point with ``hook_`` and names a few
differently; glassformer accepts its names wherever a hook name is accepted (``model.hooks``,
``run_with_cache(names=...)``, a cache's ``[...]``). The rules, in order:

    ``X.hook_normalized``             -> ``X``                    a norm's output (``blocks.0.ln1``, ``ln_final``)
    ``blocks.L.hook_q_input`` (k, v)  -> ``blocks.L.attn.q_input``  per-head inputs of W_Q, W_K, W_V
    ``attn.hook_attn_scores``         -> ``attn.scores``
    ``hook_X``                        -> ``X``                    every other name (``hook_resid_pre``, ``mlp.hook_post``)
    ``NAME_grad``                     -> (NAME resolved) + ``_grad``  a gradient stored by ``run_with_cache(grads=True)``

and TransformerLens's short keys ``cache["pattern", 0]``, ``cache["resid_pre", 1]``,
``cache["scale", 0, "ln1"]`` (``utils.get_act_name``'s arguments) resolve the same way.

One difference: TransformerLens's split q/k/v inputs sit *before* ``ln1`` (each head normalises its own
copy of ``resid_pre``); glassformer's ``attn.q_input`` is the attention's input, after ``ln1``.
Replacing the whole input of a head has the same effect either way; adding a vector to it does not
(glassformer's does not renormalise). TransformerLens's ``hook_rot_q`` / ``hook_rot_k``, ``hook_attn_in``
and ``hook_mlp_in`` have no glassformer counterpart and are reported as unknown names.
"""

from __future__ import annotations

GRAD_SUFFIX = "_grad"

_RENAMED = {"hook_attn_scores": "scores", "hook_normalized": ""}
_SPLIT_INPUTS = ("hook_q_input", "hook_k_input", "hook_v_input")

_SHORT = {  # TransformerLens's utils.get_act_name short names -> a template over the layer
    "embed": "embed", "pos_embed": "pos_embed",
    **{n: "blocks.{l}." + n for n in ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")},
    **{n: "blocks.{l}.attn." + n for n in ("q", "k", "v", "z", "pattern", "result", "q_input", "k_input", "v_input")},
    "scores": "blocks.{l}.attn.scores", "attn_scores": "blocks.{l}.attn.scores", "attn": "blocks.{l}.attn.pattern",
    **{n: "blocks.{l}.mlp." + n for n in ("pre", "post", "pre_linear")},
}


NO_COUNTERPART = {
    "hook_rot_q": "glassformer hooks q before RoPE (attn.q); the rotated q is not a hook point",
    "hook_rot_k": "glassformer hooks k before RoPE (attn.k); the rotated k is not a hook point",
    "hook_attn_in": "use attn.q_input / k_input / v_input (per-head inputs, after ln1)",
    "hook_mlp_in": "the MLP reads ln2 (hook blocks.L.ln2), whose input is resid_mid",
}


def unknown_alias_hint(name: str) -> str:
    """Why a TransformerLens name has no glassformer counterpart ('' for any other name)."""
    last = name.removesuffix(GRAD_SUFFIX).split(".")[-1]
    return f"; TransformerLens's {last} has no counterpart: {NO_COUNTERPART[last]}" if last in NO_COUNTERPART else ""


def resolve_alias(name):
    """glassformer's hook name for a TransformerLens name or short key; anything else comes back unchanged."""
    if isinstance(name, tuple):
        return _short_key(name)
    if not isinstance(name, str):
        return name
    if name.endswith(GRAD_SUFFIX):
        return resolve_alias(name[: -len(GRAD_SUFFIX)]) + GRAD_SUFFIX
    parts = name.split(".")
    last = parts[-1]
    if last in _SPLIT_INPUTS and parts[-2:-1] != ["attn"]:
        return ".".join(parts[:-1] + ["attn", last.removeprefix("hook_")])
    if last in _RENAMED:
        return ".".join(parts[:-1] + ([_RENAMED[last]] if _RENAMED[last] else []))
    if last.startswith("hook_"):
        return ".".join(parts[:-1] + [last.removeprefix("hook_")])
    return name


def _short_key(key: tuple):
    """``("pattern", 0)`` -> ``blocks.0.attn.pattern``; ``("scale", 0, "ln1")`` -> ``blocks.0.ln1.scale``;
    ``("scale",)`` / ``("normalized",)`` -> the final norm's."""
    if not key or not isinstance(key[0], str):
        return key
    short, layer, extra = key[0], (key[1] if len(key) > 1 else None), (key[2] if len(key) > 2 else None)
    if short in ("scale", "normalized"):
        owner = "ln_final" if layer is None else f"blocks.{layer}.{extra or 'ln1'}"
        return owner + (".scale" if short == "scale" else "")
    template = _SHORT.get(short.removeprefix("hook_"))
    if template is None or ("{l}" in template) != (layer is not None):
        return key
    return template.format(l=layer)
