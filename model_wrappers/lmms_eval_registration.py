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
* one id per catalogue variant that has one (:attr:`tg_llava_eval.variants.Variant.lmms_eval_id`:
  ``tg_llava_qwen2_7b``, ``llava_1_5_qwen2_7b``, ``tg_llava_qwen2_7b_no_fom``, ... ; aliases: the
  variant name and its VLMEvalKit name). Each resolves to a subclass whose default ``variant`` is
  that variant (:func:`wrapper_class_name`, made in the wrapper module from the same catalogue), so
  the wrapper checks that the checkpoint really is that model and records the variant in the run
  manifest. An alias of the generic id could not do this: lmms-eval does not tell the model which
  name was used.

The catalogue (:mod:`tg_llava_eval.variants`) is plain data: importing it here costs no torch.
"""

from __future__ import annotations

from tg_llava_eval.variants import VARIANTS, Variant

#: Module that holds the wrapper classes (imported by lmms-eval only when a run resolves the model).
WRAPPER_MODULE = "tg_llava_eval.model_wrappers.lmms_eval"

#: Generic model id and its alias.
MODEL_ID = "tg_llava"
MODEL_ALIASES = ("tg-llava",)


def registered_variants() -> list[Variant]:
    """The catalogue variants that have an lmms-eval model id of their own."""
    return [variant for variant in VARIANTS.values() if variant.lmms_eval_id]


def wrapper_class_name(variant: Variant) -> str:
    """Name of the wrapper subclass of ``variant`` in :data:`WRAPPER_MODULE` (``TGLlava_tg_llava_qwen2_7b``)."""
    return f"TGLlava_{variant.lmms_eval_id}"


def manifests():
    """Return the lmms-eval model manifests of TG-LLaVA (the entry-point target).

    Returns:
        list[lmms_eval.models.registry_v2.ModelManifest]: the generic ``tg_llava`` manifest first,
        then one per catalogue variant with an lmms-eval id. All are *simple* models (``is_simple = True``): lmms-eval's
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
    for variant in registered_variants():
        result.append(
            ModelManifest(
                model_id=variant.lmms_eval_id,
                simple_class_path=f"{WRAPPER_MODULE}.{wrapper_class_name(variant)}",
                aliases=(variant.name, variant.vlmevalkit_name) if variant.vlmevalkit_name else (variant.name,),
            )
        )
    return result
