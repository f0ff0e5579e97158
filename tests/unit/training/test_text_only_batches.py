"""A text-only micro-batch must still put every trainable parameter in the graph.

Why: with several ranks, DeepSpeed ZeRO-2/ZeRO-3 (and DDP) need every rank to run the same
modules and produce gradients for the same parameters at each step. Stage-2 data mixes image and
text-only rows, so one rank can draw a micro-batch without any image while another has images.
The official LLaVA/TG-LLaVA code runs the vision side on a zero image for text-only samples and
keeps its features in the graph (``cur_image_features[0:0]``), so this never diverges. Measured on
this repository (2 CPU ranks, gloo) before the fix: a text-only micro-batch on one rank aborted
ZeRO-2 and ZeRO-3 with ``gloo::EnforceNotMet ... Is there a distributed collective mismatch in your
code?``. ``TGLlavaForConditionalGeneration.forward`` now runs the visual branch whenever
``pixel_values`` is given and adds ``0 * visual_tokens.sum()`` when nothing is scattered.
"""

from __future__ import annotations

from tg_llava_eval.modeling import TGLlavaForConditionalGeneration
from tg_llava_eval.processing import TGLlavaProcessor
from tg_llava_eval.training.recipe import FINETUNE
from tg_llava_eval.training.stages import apply_stage_groups


def test_every_trainable_parameter_gets_a_gradient_on_a_text_only_batch(tiny_checkpoint):
    model = TGLlavaForConditionalGeneration.from_pretrained(tiny_checkpoint)
    processor = TGLlavaProcessor.from_pretrained(tiny_checkpoint)
    apply_stage_groups(model, FINETUNE.trainable_groups)
    sample = processor.tokenize_training_sample(
        [{"from": "human", "value": "How many sides does a square have?"}, {"from": "gpt", "value": "4"}], False
    )
    batch = processor.collate_training([sample], [None])
    model(**batch).loss.backward()
    without_gradient = {
        group: sum(p.grad is None for p in module.parameters())
        for group, module in model.trainable_groups().items()
    }
    assert without_gradient == {group: 0 for group in model.trainable_groups()}
