"""lmms-eval model registration of TG-LLaVA through the ``lmms_eval.models`` entry point.

lmms-eval 0.7.x builds its model registry (``lmms_eval.models.MODEL_REGISTRY_V2``) when
``lmms_eval.models`` is first imported, and as the last step loads every entry point of the group
``lmms_eval.models``. setup.cfg declares ours::

    [options.entry_points]
    lmms_eval.models =
        tg_llava = tg_llava_eval.model_wrappers.lmms_eval_registration:manifests

so after ``pip install`` (editable or not) ``lmms-eval --model tg_llava ...`` finds the wrapper
with lmms-eval unmodified and without the deprecated ``LMMS_EVAL_PLUGINS`` variable.
(``@register_model`` alone would not work: it fills a registry the 0.7.x evaluator never reads.)

Why this module is tiny and imports lmms-eval lazily:

* it runs inside *every* ``import lmms_eval.models``, so it must not import torch, transformers or
  the wrapper itself; the class paths below are strings that lmms-eval imports only when a run
  asks for the model;
* lmms-eval swallows an exception raised by *any* entry point (with a warning) and skips the
  entry points after it, so this code must not fail;
* ``ModelManifest`` is imported inside :func:`manifests`, not at module level: if this module were
  imported first (a test, a tool) a module-level ``from lmms_eval.models.registry_v2 import ...``
  would start ``lmms_eval.models``' own initialisation, which would load this entry point while the
  module is still half-initialised (no ``manifests`` yet) and silently lose the registration.

Names registered (lmms-eval's ``--model`` value):

* ``tg_llava`` (alias ``tg-llava``): any TG-LLaVA or LLaVA-1.5 checkpoint of this project; the
  variant is read from ``--model_args variant=...`` or left to the checkpoint.
* one id per paper variant (aliases: the variant name and VLMEvalKit's display name, DESIGN §6):
  ``tg_llava_vicuna_13b``, ``tg_llava_llama3_8b``, ``tg_llava_qwen2_7b``. Each resolves to a
  subclass whose default ``variant`` is that paper variant, so the wrapper checks that the
  checkpoint really is that model and records the variant in the run manifest. An alias of the
  generic id could not do this: lmms-eval does not tell the model which name was used.
"""

from __future__ import annotations

#: Module that holds the wrapper classes (imported by lmms-eval only when a run resolves the model).
WRAPPER_MODULE = "tg_llava_eval.model_wrappers.lmms_eval"

#: Generic model id and its alias.
MODEL_ID = "tg_llava"
MODEL_ALIASES = ("tg-llava",)

#: The paper variants: (lmms-eval model id, wrapper class name, aliases). The first alias is the
#: variant name of :mod:`tg_llava_eval.variants` (a unit test checks it exists there); the second
#: is the display name VLMEvalKit uses. Literal strings on purpose: importing ``variants`` here
#: would pull transformers into every ``import lmms_eval.models``.
PAPER_VARIANT_MODELS = (
    ("tg_llava_vicuna_13b", "TGLlavaVicuna13B", ("tg-llava-vicuna-13b", "TG-LLaVA-Vicuna-13B")),
    ("tg_llava_llama3_8b", "TGLlavaLlama3_8B", ("tg-llava-llama3-8b", "TG-LLaVA-Llama3-8B")),
    ("tg_llava_qwen2_7b", "TGLlavaQwen2_7B", ("tg-llava-qwen2-7b", "TG-LLaVA-Qwen2-7B")),
)


def manifests():
    """Return the lmms-eval model manifests of TG-LLaVA (the entry-point target).

    Returns:
        list[lmms_eval.models.registry_v2.ModelManifest]: the generic ``tg_llava`` manifest first,
        then one per paper variant. All are *simple* models (``is_simple = True``): lmms-eval's
        chat path cannot run ``multiple_choice`` tasks, and TG-LLaVA applies its own conversation
        templates.
    """
    # Imported here, not at module level: see the module docstring.
    from lmms_eval.models.registry_v2 import ModelManifest

    result = [
        ModelManifest(
            model_id=MODEL_ID,
            simple_class_path=f"{WRAPPER_MODULE}.TGLlava",
            aliases=MODEL_ALIASES,
        )
    ]
    for model_id, class_name, aliases in PAPER_VARIANT_MODELS:
        result.append(
            ModelManifest(
                model_id=model_id,
                simple_class_path=f"{WRAPPER_MODULE}.{class_name}",
                aliases=aliases,
            )
        )
    return result
