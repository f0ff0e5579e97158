"""The demo's synthetic benchmark: coloured shapes in a grid, questions about them, and the files
both training (LLaVA JSON) and both toolkits (VLMEvalKit TSVs, lmms-eval task folders) read.

* :mod:`.scenes` — scenes: sampling, rendering to PNG, captions;
* :mod:`.questions` — questions of each kind and category, with their answers;
* :mod:`.dataset` — :func:`generate_synthetic_dataset`, which writes every file and the card;
* :mod:`.lmms_utils` — the lmms-eval task hooks, copied verbatim into each generated task folder.

Same arguments give byte-identical files. The dataset's files and design: ``docs/demo.md``,
"The synthetic benchmark".
"""

from tg_llava_eval.demo.synthetic.dataset import SyntheticDataset, generate_synthetic_dataset

__all__ = ["SyntheticDataset", "generate_synthetic_dataset"]
