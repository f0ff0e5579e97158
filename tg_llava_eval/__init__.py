"""tg-llava-eval: TG-LLaVA (Text Guided LLaVA, AAAI 2025) on current Hugging Face transformers.

The public API, importable from here::

    from tg_llava_eval import (TGLlavaConfig, TGLlavaForConditionalGeneration, TGLlavaProcessor,
                               TGLlavaEngine, GenerationRequest, get_variant)

Each name is imported on first use, so ``import tg_llava_eval`` itself imports no torch (the results
and leaderboard side, and the lmms-eval entry point, stay light).

Sub-packages (one import namespace, mapped from the repository's top-level folders):

* :mod:`tg_llava_eval.variants` — the variant catalogue (plain data);
* :mod:`tg_llava_eval.modeling` — ``TGLlavaConfig`` and ``TGLlavaForConditionalGeneration``;
* :mod:`tg_llava_eval.processing` — ``TGLlavaProcessor`` (images, crops, templates, guide text);
* :mod:`tg_llava_eval.checkpoints` — reading, assembling, creating and converting checkpoints
  (the file and hub I/O that modeling does not do);
* :mod:`tg_llava_eval.inference` — the batched generation engine with a vision-feature cache;
* :mod:`tg_llava_eval.model_wrappers` — VLMEvalKit and lmms-eval adapters (repository folder
  ``model_wrappers/``);
* :mod:`tg_llava_eval.training` — the two-stage recipe on the HF Trainer (``training/``);
* :mod:`tg_llava_eval.results` / :mod:`tg_llava_eval.leaderboards` — score aggregation and tables
  (``results/``, ``leaderboards/``).

The layers and their rules: docs/architecture.md.
"""

from __future__ import annotations

from .lazy_api import lazy_exports

__version__ = "0.1.0"

#: Public name -> the module that defines it (imported on first attribute access).
_PUBLIC_API = {
    "TGLlavaConfig": "tg_llava_eval.modeling",
    "TGLlavaForConditionalGeneration": "tg_llava_eval.modeling",
    "TGLlavaProcessor": "tg_llava_eval.processing",
    "TGLlavaEngine": "tg_llava_eval.inference",
    "GenerationRequest": "tg_llava_eval.inference",
    "GenerationResult": "tg_llava_eval.inference",
    "get_variant": "tg_llava_eval.variants",
    "list_variants": "tg_llava_eval.variants",
}

__all__ = ["__version__", *_PUBLIC_API]


__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC_API)
