"""Model zoo: blocks, registry and models. See `core.models.registry`."""
from core.models.attention import AttentionMap, capture_attention
from core.models.registry import HParam, ModelSpec, create, list_models, register, spec

__all__ = ["AttentionMap", "HParam", "ModelSpec", "capture_attention", "create", "list_models", "register", "spec"]
