"""`ModelConfig`: one validated description of every model glassformer can build.

The three shapes of the 2017 family share one config:

* ``arch="decoder"``         GPT: causal self-attention, next-token logits.
* ``arch="encoder"``         BERT: bidirectional self-attention, masked-LM logits and an optional
                             sequence-classification head (``n_classes > 0``).
* ``arch="encoder-decoder"`` the original paper: an encoder stack, and a causal decoder stack whose
                             blocks also cross-attend to the encoder's output.

Every variant (norm type and placement, positional scheme, activation, ...) is a field whose allowed
values are listed in ``CHOICES``; a bad value raises :class:`~glassformer.errors.ConfigError` naming the
field and what it may be. Configs round-trip through JSON and TOML.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from glassformer.errors import ConfigError
from glassformer.model.registry import CHOICES  # filled in by the components' registries (registry.py)

RELATIVE_POSITIONALS = ("rope", "alibi", "t5", "none")  # schemes that only see offsets i - j


@dataclass
class ModelConfig:
    """Hyper-parameters of a glassformer :class:`~glassformer.Transformer`.

    Sizes follow the literature's names: the residual stream has width ``d_model``; each of the
    ``n_heads`` attention heads works in ``d_head`` dimensions; the MLP's hidden layer has ``d_mlp``
    units; the vocabulary has ``d_vocab`` tokens; sequences have at most ``n_ctx`` positions.
    Fields left ``None`` are derived in ``__post_init__`` (shown in each comment).
    """

    arch: str = "decoder"
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    d_head: int | None = None  # -> d_model // n_heads
    n_kv_heads: int | None = None  # -> n_heads (fewer: grouped-query attention; 1: multi-query)
    d_mlp: int | None = None  # -> 4 * d_model
    d_vocab: int = 64
    d_vocab_out: int | None = None  # -> d_vocab (the unembedding's output size)
    n_ctx: int = 256
    n_decoder_layers: int | None = None  # encoder-decoder only: -> n_layers
    norm: str = "layernorm"
    norm_position: str = "pre"
    final_norm: bool | None = None  # -> True for pre-norm, False for post-norm (its output is already normed)
    norm_eps: float = 1e-5
    positional: str = "learned"
    rope_base: float = 10000.0
    rope_fraction: float = 1.0  # RoPE rotates this fraction of each head's dimensions
    act: str = "gelu"
    qk_norm: bool = False  # normalise each head's queries and keys (over d_head) before the dot product
    attn_only: bool = False  # no MLPs: attention-only transformer
    tie_embeddings: bool = False  # W_U = W_E^T
    embed_norm: bool = False  # resid_0 = Norm(embed + pos_embed): BERT's embedding LayerNorm
    unembed_transform: bool = False  # logits = Norm(act(x W_T + b_T)) W_U + b_U: BERT's MLM-head transform
    parallel_residual: bool = False  # x + Attn(Norm1(x)) + MLP(Norm2(x)) in one step: GPT-J / GPT-NeoX (Pythia)
    bias: bool = True
    dropout: float = 0.0
    attn_scale: float | None = None  # -> 1 / sqrt(d_head)
    n_classes: int = 0  # encoder: size of the sequence-classification head (0 = none)
    init_std: float = 0.02
    # -- variants (docs/variants.md) --
    t5_buckets: int = 32  # positional="t5": number of relative-offset buckets
    t5_max_distance: int = 128  # positional="t5": offsets beyond this share the last bucket
    attention: str = "full"
    window: int | None = None  # attention="sliding": each query sees the `window` latest keys (itself included)
    stride: int | None = None  # attention="sparse": block length l -> round(sqrt(n_ctx))
    sparse_pattern: str = "strided"  # attention="sparse": "strided" or "fixed"
    sparse_summary: int = 1  # attention="sparse", "fixed": the last c positions of each block summarise it
    linformer_k: int | None = None  # attention="linformer": keys/values are projected to this many slots
    memory_len: int = 0  # Transformer-XL: attend to this many cached states of the previous segment(s)
    input: str = "tokens"
    image_size: int | None = None  # input="patches": images are image_size x image_size pixels
    patch_size: int | None = None  # input="patches": cut into patch_size x patch_size patches
    n_channels: int = 1  # input="patches": colour channels
    # -- Gemma 2 / 3 (docs/interop.md) --
    attn_softcap: float | None = None  # scores = c tanh(scores / c) before the mask: attention logit soft-capping
    logit_softcap: float | None = None  # logits = c tanh(logits / c): final logit soft-capping
    sandwich_norm: bool = False  # x + Norm_post(Sublayer(Norm(x))): a second norm on each sublayer's output
    global_every: int | None = None  # attention="sliding": layers global_every-1, 2*global_every-1, ... see every key
    rope_local_base: float | None = None  # global_every: the sliding layers' RoPE base (rope_base: the global layers')
    # -- per-layer sizes (docs/variants.md, "Per-layer sizes"): None = every layer the same --
    layer_n_heads: list[int] | None = None  # heads of each layer; n_heads -> the largest
    layer_d_head: list[int] | None = None  # d_head of each layer; d_head -> the largest
    layer_d_mlp: list[int] | None = None  # d_mlp of each layer; d_mlp -> the largest

    def __post_init__(self) -> None:
        _check_types(self)
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(f"ModelConfig.{name} = {value!r} is not one of {', '.join(map(repr, allowed))}")
        for name in ("d_model", "n_layers", "n_heads", "d_vocab", "n_ctx"):
            _require_positive_int(name, getattr(self, name))
        _check_layer_sizes(self)
        if self.d_head is None:
            if self.d_model % self.n_heads:
                raise ConfigError(
                    f"ModelConfig.d_model = {self.d_model} is not divisible by n_heads = {self.n_heads}; "
                    "set d_head explicitly or choose sizes that divide"
                )
            self.d_head = self.d_model // self.n_heads
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        if self.d_mlp is None:
            self.d_mlp = 4 * self.d_model
        if self.d_vocab_out is None:
            self.d_vocab_out = self.d_vocab
        if self.n_decoder_layers is None:
            self.n_decoder_layers = self.n_layers
        if self.final_norm is None:
            self.final_norm = self.norm_position == "pre" and self.norm != "none"
        for name in ("d_head", "n_kv_heads", "d_mlp", "d_vocab_out", "n_decoder_layers"):
            _require_positive_int(name, getattr(self, name))
        if self.n_heads % self.n_kv_heads:
            raise ConfigError(
                f"ModelConfig.n_heads = {self.n_heads} must be a multiple of n_kv_heads = {self.n_kv_heads}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"ModelConfig.dropout = {self.dropout!r} must be in [0, 1)")
        if not 0.0 < self.rope_fraction <= 1.0:
            raise ConfigError(f"ModelConfig.rope_fraction = {self.rope_fraction!r} must be in (0, 1]")
        if self.positional == "rope" and int(self.d_head * self.rope_fraction) % 2:
            raise ConfigError(
                f"ModelConfig.rope_fraction * d_head = {self.d_head * self.rope_fraction:g} must be an even "
                "number of dimensions (RoPE rotates pairs)"
            )
        if self.positional == "sinusoidal" and self.d_model % 2:
            raise ConfigError(f"ModelConfig.d_model = {self.d_model} must be even for sinusoidal positions")
        if self.n_classes < 0 or (self.n_classes and self.arch != "encoder"):
            raise ConfigError(
                f"ModelConfig.n_classes = {self.n_classes} is only allowed (> 0) with arch='encoder'"
            )
        if self.tie_embeddings and self.d_vocab_out != self.d_vocab:
            raise ConfigError("ModelConfig.tie_embeddings needs d_vocab_out == d_vocab")
        if self.embed_norm and self.norm == "none":
            raise ConfigError("ModelConfig.embed_norm needs norm = 'layernorm' or 'rmsnorm' (it uses the same norm type)")
        if self.unembed_transform and self.act in ("swiglu", "geglu", "geglu_tanh"):
            raise ConfigError(f"ModelConfig.unembed_transform needs a plain (not gated) act, got act = {self.act!r}")
        if self.qk_norm and self.norm == "none":
            raise ConfigError("ModelConfig.qk_norm needs norm = 'layernorm' or 'rmsnorm' (QK-norm uses the same norm type)")
        for name in ("attn_scale", "norm_eps", "rope_base", "init_std", "attn_softcap", "logit_softcap", "rope_local_base"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"ModelConfig.{name} = {value!r} must be a positive, finite number")
        if self.parallel_residual and (self.norm_position != "pre" or self.attn_only or self.arch == "encoder-decoder"):
            raise ConfigError("ModelConfig.parallel_residual needs norm_position='pre', an MLP (attn_only=False) and no cross-attention")
        _check_variants(self)
        _check_gemma(self)
        for layer in range(self.n_layers) if self.per_layer else ():
            try:
                self.layer_config(layer)  # each layer's sizes must make a valid model too (e.g. RoPE's even d_head)
            except ConfigError as e:
                raise ConfigError(f"layer {layer}: {e}") from None

    # -- derived -------------------------------------------------------------------------------------

    @property
    def per_layer(self) -> bool:
        """Whether layers differ in n_heads, d_head or d_mlp (``layer_n_heads`` / ``layer_d_head`` / ``layer_d_mlp``)."""
        return any(getattr(self, name) is not None for name in LAYER_SIZES.values())

    @property
    def causal(self) -> bool:
        """Whether the main stack's self-attention is causal (decoders) or bidirectional (encoders)."""
        return self.arch != "encoder"

    @property
    def scale(self) -> float:
        """The factor attention scores are multiplied by: ``attn_scale`` or 1/sqrt(d_head)."""
        return self.attn_scale if self.attn_scale is not None else 1.0 / math.sqrt(self.d_head)

    @property
    def n_residual_writes(self) -> int:
        """How many sublayers add into residual streams: 2 per block (attention, MLP), encoder blocks included
        (GPT-2's count; a decoder block's cross-attention is not counted). W_O and W_out start smaller by its sqrt."""
        return 2 * (self.n_layers + (self.n_decoder_layers if self.arch == "encoder-decoder" else 0))

    @property
    def n_patches(self) -> int:
        """input="patches": how many patches an image is cut into, (image_size / patch_size)^2."""
        return (self.image_size // self.patch_size) ** 2 if self.input == "patches" else 0

    # -- (de)serialisation ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown ModelConfig field(s): {', '.join(unknown)}; known fields: {', '.join(sorted(known))}")
        return cls(**data)

    def layer_config(self, layer: int) -> ModelConfig:
        """The config block ``layer`` of a stack is built from: this one, with that layer's n_heads, d_head and d_mlp
        where per-layer sizes are set, and with ``global_every`` (Gemma 2 / 3's alternating layers) block l global
        (attention="full") when (l + 1) % global_every == 0 and sliding-window otherwise, its RoPE base
        ``rope_local_base`` where that is set. ``self`` itself when every layer is the same."""
        if not self.per_layer and self.global_every is None:
            return self
        changes: dict[str, Any] = {}
        if self.per_layer:
            if not 0 <= layer < self.n_layers:
                raise ConfigError(f"layer {layer} does not exist: the model has layers 0..{self.n_layers - 1}")
            changes.update({field: getattr(self, name)[layer] for field, name in LAYER_SIZES.items() if getattr(self, name) is not None})
            changes.update({name: None for name in LAYER_SIZES.values()}, n_kv_heads=None)
        if self.global_every is not None:
            changes.update(global_every=None, rope_local_base=None)
            if (layer + 1) % self.global_every == 0:
                changes.update(attention="full", window=None)
            else:
                changes.update(rope_base=self.rope_local_base or self.rope_base)
        return self.replace(**changes)

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with some fields changed (derived fields are re-derived unless given)."""
        return ModelConfig.from_dict({**self.to_dict(), **changes})

    def save_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def save_toml(self, path: str | Path) -> None:
        lines = [f"{k} = {_toml_value(v)}" for k, v in self.to_dict().items() if v is not None]
        Path(path).write_text("\n".join(lines) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ModelConfig:
        """Read a config from a ``.json`` or ``.toml`` file."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        if path.suffix not in (".json", ".toml"):
            raise ConfigError(f"{path}: config files are .json or .toml, not {path.suffix or 'a file without a suffix'!r}")
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path} cannot be read as text: {e}") from None
        try:
            if path.suffix == ".toml":
                data = _toml_loads(text)
            else:
                data = json.loads(text)
        except ValueError as e:  # JSONDecodeError and TOMLDecodeError are ValueErrors
            raise ConfigError(f"{path} is not valid {'TOML' if path.suffix == '.toml' else 'JSON'}: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a table of config fields, not {type(data).__name__}")
        return cls.from_dict(model_table(data, path))


def model_table(data: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The model fields of a config file: its top level, or its ``[model]`` table. A file with a ``[model]``
    table may hold other tables (``[train]``: read by ``glassformer train --config``) but no loose fields."""
    if "model" not in data:
        return data
    loose = sorted(k for k, v in data.items() if k != "model" and not isinstance(v, dict))
    if loose:
        raise ConfigError(f"{path}: field(s) {', '.join(loose)} sit outside the [model] table; put them inside it")
    if not isinstance(data["model"], dict):
        raise ConfigError(f"{path}: 'model' must be a table of ModelConfig fields")
    return data["model"]


LAYER_SIZES = {"n_heads": "layer_n_heads", "d_head": "layer_d_head", "d_mlp": "layer_d_mlp"}  # size -> its per-layer list


def _check_layer_sizes(c: ModelConfig) -> None:
    """Per-layer sizes: each list holds one positive int per layer; the uniform field becomes its largest
    entry (what a tool sizing a [layers, heads] table needs). One stack only, and no grouped-query attention."""
    for size, name in LAYER_SIZES.items():
        sizes = getattr(c, name)
        if sizes is None:
            continue
        if not isinstance(sizes, (list, tuple)) or len(sizes) != c.n_layers or not all(
                isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in sizes):
            raise ConfigError(f"ModelConfig.{name} = {sizes!r} must be a list of n_layers = {c.n_layers} positive integers")
        setattr(c, name, list(sizes))
        setattr(c, size, max(sizes))
    if not c.per_layer:
        return
    if c.arch == "encoder-decoder":
        raise ConfigError("ModelConfig.layer_n_heads / layer_d_head / layer_d_mlp describe one stack: "
                          "they are not available for arch='encoder-decoder'")
    if c.layer_n_heads is not None and c.n_kv_heads not in (None, c.n_heads):
        raise ConfigError("ModelConfig.layer_n_heads cannot be combined with n_kv_heads (grouped-query attention)")
    if c.layer_d_mlp is not None and c.attn_only:
        raise ConfigError("ModelConfig.layer_d_mlp is unused with attn_only=True (there are no MLPs)")


def _check_variants(c: ModelConfig) -> None:
    """Validate (and derive) the variant fields: attention patterns, T5 bias, Transformer-XL memory, patches."""
    if c.positional == "t5":
        _require_positive_int("t5_buckets", c.t5_buckets)
        _require_positive_int("t5_max_distance", c.t5_max_distance)
        if c.t5_buckets < 4 or c.t5_max_distance <= c.t5_buckets // (2 if c.causal else 4):
            raise ConfigError(
                f"ModelConfig.t5_buckets = {c.t5_buckets} must be >= 4 and t5_max_distance = {c.t5_max_distance} "
                "larger than the exact-offset buckets (t5_buckets / 2, or / 4 for encoders)"
            )
    uses = {"window": "sliding", "linformer_k": "linformer", "stride": "sparse"}
    for name, attention in uses.items():
        if getattr(c, name) is not None and c.attention != attention:
            raise ConfigError(f"ModelConfig.{name} is only used with attention={attention!r}, not {c.attention!r}")
    if c.attention == "sliding":
        if c.window is None:
            raise ConfigError("ModelConfig.attention='sliding' needs window (how many latest keys each query sees)")
        _require_positive_int("window", c.window)
    if c.attention == "sparse":
        if c.stride is None:
            c.stride = max(1, round(math.sqrt(c.n_ctx)))  # l ~ sqrt(n): O(n sqrt(n)) (Child et al. 2019)
        _require_positive_int("stride", c.stride)
        if not isinstance(c.sparse_summary, int) or not 1 <= c.sparse_summary <= c.stride:
            raise ConfigError(f"ModelConfig.sparse_summary = {c.sparse_summary!r} must be an int in 1..stride = {c.stride}")
    if c.attention == "linformer":
        if c.arch != "encoder":
            raise ConfigError(
                "ModelConfig.attention='linformer' projects keys along the whole sequence, which would let a "
                f"query see the future: it needs arch='encoder', not {c.arch!r}"
            )
        if c.linformer_k is None:
            raise ConfigError("ModelConfig.attention='linformer' needs linformer_k (the projected sequence length)")
        _require_positive_int("linformer_k", c.linformer_k)
    if c.attention in ("linear", "linformer") and c.positional in ("alibi", "t5"):
        raise ConfigError(
            f"ModelConfig.positional = {c.positional!r} adds a bias to a score matrix, which attention = "
            f"{c.attention!r} never forms; use rope, learned, sinusoidal or none"
        )
    if not isinstance(c.memory_len, int) or isinstance(c.memory_len, bool) or c.memory_len < 0:
        raise ConfigError(f"ModelConfig.memory_len = {c.memory_len!r} must be an integer >= 0")
    if c.memory_len:
        if c.arch != "decoder":
            raise ConfigError(f"ModelConfig.memory_len (Transformer-XL) needs arch='decoder', not {c.arch!r}")
        if c.positional not in RELATIVE_POSITIONALS:
            raise ConfigError(
                f"ModelConfig.memory_len needs relative positions (one of {', '.join(map(repr, RELATIVE_POSITIONALS))}): "
                f"positional = {c.positional!r} would restart at 0 in every segment"
            )
    if c.input == "patches":
        for name in ("image_size", "patch_size", "n_channels"):
            _require_positive_int(name, getattr(c, name))
        if c.image_size % c.patch_size:
            raise ConfigError(f"ModelConfig.image_size = {c.image_size} is not divisible by patch_size = {c.patch_size}")
        if c.arch != "encoder" or c.n_classes < 1:
            raise ConfigError("ModelConfig.input='patches' (vision transformer) needs arch='encoder' and n_classes > 0")
        if c.n_ctx < c.n_patches + 1:
            raise ConfigError(
                f"ModelConfig.n_ctx = {c.n_ctx} is too small for {c.n_patches} patches plus the class token"
            )
    elif c.image_size is not None or c.patch_size is not None:
        raise ConfigError("ModelConfig.image_size / patch_size are only used with input='patches'")


def _check_gemma(c: ModelConfig) -> None:
    """Gemma 2 / 3's fields: sandwich norms need pre-norm blocks with a norm; alternating layers need sliding attention."""
    if c.sandwich_norm and (c.norm_position != "pre" or c.norm == "none" or c.parallel_residual):
        raise ConfigError("ModelConfig.sandwich_norm needs norm_position='pre', a norm (not 'none') and no parallel_residual")
    if c.global_every is not None:
        _require_positive_int("global_every", c.global_every)
        if c.attention != "sliding":
            raise ConfigError(f"ModelConfig.global_every alternates sliding-window and global layers: it needs attention='sliding', not {c.attention!r}")
    if c.rope_local_base is not None and (c.global_every is None or c.positional != "rope"):
        raise ConfigError("ModelConfig.rope_local_base is the sliding layers' RoPE base: it needs positional='rope' and global_every")


_TYPES = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


def _check_types(c: ModelConfig) -> None:
    """Every field has the type its annotation names (``None`` where the annotation allows it): a string
    "0.1" or a float 2.0 for an integer field is refused here, not turned into a wrong model later."""
    for f in fields(c):
        value = getattr(c, f.name)
        kinds = [k.strip() for k in str(f.type).split("|")]
        if value is None and "None" in kinds:
            continue
        allowed = tuple(t for k in kinds for t in _TYPES.get(k, ()))
        if not allowed:
            continue
        is_bool = isinstance(value, bool)
        if not isinstance(value, allowed) or (is_bool and bool not in allowed):
            want = " or ".join(k for k in kinds if k != "None") + (" (or None)" if "None" in kinds else "")
            raise ConfigError(f"ModelConfig.{f.name} = {value!r} must be of type {want}, not {type(value).__name__}")


def _require_positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"ModelConfig.{name} = {value!r} must be a positive integer")


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    return repr(v)


def _toml_loads(text: str) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    return tomllib.loads(text)
