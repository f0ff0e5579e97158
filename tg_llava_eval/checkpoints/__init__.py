"""Checkpoint I/O: everything that reads, assembles, creates or converts TG-LLaVA checkpoints.

The model code (:mod:`tg_llava_eval.modeling`) holds only nn.Modules and no file or hub I/O; this
package sits above it and :mod:`tg_llava_eval.processing`, one job per module:

* :mod:`.reading` — weights from safetensors (single or sharded) or tensor-only ``.bin``
  (:func:`read_state_dict`), the official ``config.json``, tokenizer folders;
* :mod:`.loading` — strict loading into a module with a missing/unexpected key report;
* :mod:`.creating` — random-init checkpoints of a preset (:func:`create_checkpoint`), tokenizers
  and config for a preset, writing model + processor;
* :mod:`.assembling` — a stage-1 start from pretrained CLIP and LLM checkpoints
  (:func:`assemble_model`, behind ``TGLlavaForConditionalGeneration.from_components``;
  :func:`assemble_checkpoint`);
* :mod:`.switching` — a trained checkpoint with TG modules switched off (inference-time ablation);
* :mod:`.converting` — the official key table and :func:`convert_checkpoint`.

Names below are imported on first use. The layers and the reasons: docs/architecture.md.
"""

from __future__ import annotations

from ..lazy_api import lazy_exports

#: Public name -> the module of this package that defines it (imported on first attribute access).
_PUBLIC_API = {
    "read_state_dict": ".reading",
    "read_official_config": ".reading",
    "has_tokenizer_files": ".reading",
    "load_strict": ".loading",
    "create_checkpoint": ".creating",
    "build_tokenizers": ".creating",
    "config_for_tokenizers": ".creating",
    "write_checkpoint": ".creating",
    "check_output_folder": ".folders",
    "require_checkpoint": ".folders",
    "checkpoint_problem": ".folders",
    "assemble_model": ".assembling",
    "assemble_checkpoint": ".assembling",
    "switch_checkpoint": ".switching",
    "official_to_hf": ".converting",
    "hf_llava_config": ".converting",
    "to_hf_llava_state_dict": ".converting",
    "convert_checkpoint": ".converting",
}

__all__ = list(_PUBLIC_API)


__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC_API)
