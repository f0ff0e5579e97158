"""Inference: one engine for the VLMEvalKit wrapper, the lmms-eval wrapper and the chat CLI.

See :mod:`.engine` for the batching and caching design and :mod:`.requests` for the records the
wrappers exchange with it.
"""

from .engine import DEFAULT_CACHE_SIZE, DEFAULT_MAX_NEW_TOKENS, TGLlavaEngine, resolve_dtype
from .requests import (
    GenerationRequest,
    GenerationResult,
    ImageInput,
    LoglikelihoodRequest,
    LoglikelihoodResult,
)
from .vision_cache import CachedFeatures, VisionFeatureCache, image_digest

__all__ = [
    "TGLlavaEngine",
    "GenerationRequest",
    "GenerationResult",
    "LoglikelihoodRequest",
    "LoglikelihoodResult",
    "ImageInput",
    "VisionFeatureCache",
    "CachedFeatures",
    "image_digest",
    "resolve_dtype",
    "DEFAULT_CACHE_SIZE",
    "DEFAULT_MAX_NEW_TOKENS",
]
