"""Inference: one engine for the VLMEvalKit wrapper, the lmms-eval wrapper and the chat CLI.

See :mod:`.engine` for the batching and caching design and :mod:`.requests` for the records the
wrappers exchange with it. Names below are imported on first use, so the torch-free parts
(:mod:`.generation_settings`) serve argument checks before the model stack is loaded.
"""

from __future__ import annotations

from ..lazy_api import lazy_exports

#: Public name -> the module of this package that defines it (imported on first attribute access).
_PUBLIC_API = {
    "TGLlavaEngine": ".engine",
    "resolve_dtype": ".engine",
    "DEFAULT_CACHE_SIZE": ".engine",
    "DEFAULT_MAX_NEW_TOKENS": ".engine",
    "GenerationRequest": ".requests",
    "GenerationResult": ".requests",
    "LoglikelihoodRequest": ".requests",
    "LoglikelihoodResult": ".requests",
    "ImageInput": ".requests",
    "VisionFeatureCache": ".vision_cache",
    "CachedFeatures": ".vision_cache",
    "image_digest": ".vision_cache",
}

__all__ = list(_PUBLIC_API)


__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC_API)
