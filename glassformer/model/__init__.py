"""The transformer itself: config, components, the `Transformer` class and its hook points."""

from glassformer.model.config import CHOICES, ModelConfig
from glassformer.model.hooks import HookPoint
from glassformer.model.kv_cache import KVCache
from glassformer.model.segment_memory import SegmentMemory
from glassformer.model.transformer import Transformer

__all__ = ["CHOICES", "HookPoint", "KVCache", "ModelConfig", "SegmentMemory", "Transformer"]
