"""tg-llava-eval: TG-LLaVA (Text Guided LLaVA, AAAI 2025) on current Hugging Face transformers.

Sub-packages (one import namespace, mapped from the repository's top-level folders):

* :mod:`tg_llava_eval.modeling` — ``TGLlavaConfig`` and ``TGLlavaForConditionalGeneration``;
* :mod:`tg_llava_eval.processing` — ``TGLlavaProcessor`` (images, crops, templates, guide text);
* :mod:`tg_llava_eval.inference` — the batched generation engine with a vision-feature cache;
* :mod:`tg_llava_eval.model_wrappers` — VLMEvalKit and lmms-eval adapters;
* :mod:`tg_llava_eval.training` — the two-stage recipe on the HF Trainer;
* :mod:`tg_llava_eval.results` / :mod:`tg_llava_eval.leaderboards` — score aggregation and tables.

Importing this package is cheap: it imports no torch.
"""

__version__ = "0.1.0"
