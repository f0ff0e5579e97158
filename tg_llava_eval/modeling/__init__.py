"""TG-LLaVA model and configuration, registered with transformers' Auto classes.

Importing this package registers ``model_type="tg_llava"`` with ``AutoConfig``, ``AutoModel``,
``AutoModelForImageTextToText`` and ``AutoModelForCausalLM``, so that
``AutoModelForImageTextToText.from_pretrained(dir)`` works on our checkpoints without
``trust_remote_code``. It imports neither DeepSpeed nor either evaluation toolkit (a test enforces it).
"""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForImageTextToText

from .configuration_tg_llava import TGLlavaConfig
from .modeling_tg_llava import (
    FROZEN_GROUPS,
    TRAINABLE_GROUPS,
    TGLlavaDetailPerceiver,
    TGLlavaForConditionalGeneration,
    TGLlavaPreTrainedModel,
    TGLlavaProjector,
    TGLlavaTextGuidedMask,
)

AutoConfig.register(TGLlavaConfig.model_type, TGLlavaConfig, exist_ok=True)
for _auto in (AutoModel, AutoModelForImageTextToText, AutoModelForCausalLM):
    _auto.register(TGLlavaConfig, TGLlavaForConditionalGeneration, exist_ok=True)

__all__ = [
    "TGLlavaConfig",
    "TGLlavaForConditionalGeneration",
    "TGLlavaPreTrainedModel",
    "TGLlavaProjector",
    "TGLlavaTextGuidedMask",
    "TGLlavaDetailPerceiver",
    "TRAINABLE_GROUPS",
    "FROZEN_GROUPS",
]
