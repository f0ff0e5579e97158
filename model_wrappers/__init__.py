"""``tg_llava_eval.model_wrappers`` (repository folder ``model_wrappers/``): the adapters that drop
TG-LLaVA into VLMEvalKit and lmms-eval, and the VLMEvalKit runner; docs/vlmevalkit.md, docs/lmms_eval.md.

Nothing heavy is imported here: the lmms-eval entry point loads this package in every
``import lmms_eval.models``.
"""
