"""``tg_llava_eval.training`` (repository folder ``training/``): training of TG-LLaVA, the
two-stage recipe of the paper on HF ``Trainer`` + DeepSpeed.

Modules (imported on demand, so that importing the package imports no torch):

* :mod:`.data`: LLaVA conversation JSON, lazy dataset, modality-length grouping, collator
  (all preprocessing through ``TGLlavaProcessor``), bad-row accounting;
* :mod:`.rows`, :mod:`.preflight`, :mod:`.outputs` (no torch): the up-front row checks, the input
  checks and DeepSpeed rule run before anything heavy, and the output folder's atomic saves and
  resume point;
* :mod:`.stages`: the per-stage trainable module groups and the parameter table;
* :mod:`.recipe`: typed stage configs (``pretrain`` / ``finetune``) with the paper's defaults;
* :mod:`.checkpoints`: stage-1 adapter export (safetensors + manifest) and strict loading;
* :mod:`.trainer`: the training run (``run_stage``), used by ``tg-llava-eval train``.

ZeRO-2/ZeRO-3 DeepSpeed configs ship as package data in ``deepspeed_configs/``. The smoke runs and
tests train on the demo's synthetic benchmark (:mod:`tg_llava_eval.demo.synthetic`); nothing here
imports it.
"""
