"""Every preset instantiates on the meta device (no download) with pinned parameter counts."""

from __future__ import annotations

import pytest
import torch

from tg_llava_eval.errors import TGLlavaConfigError
from tg_llava_eval.modeling import TGLlavaForConditionalGeneration
from tg_llava_eval.variants import get_variant, list_variants

# Official TG module sizes (reference/tg_llava_architecture.md §2): the projector and TG-DP match the
# official counts exactly; TG-FOM is the official 81,474,362 minus the 49,652,538 parameters its
# forward never computes (Q-Former word/position embeddings, text-branch FFNs, MLM head).
CLIP_L_336_VISION = 303_507_456
CLIP_L_TEXT = 123_060_480
TG_FOM = 81_474_362 - 49_652_538
EXPECTED = {
    "vicuna-13b": dict(projector=31_467_520, detail_perceiver=69_816_320, llm=13_016_519_680),
    "llama3-8b": dict(projector=20_979_712, detail_perceiver=59_328_512, llm=8_030_785_536),
    "qwen2-7b": dict(projector=16_522_240, detail_perceiver=54_871_040, llm=7_615_616_512),
}


def part_counts(model) -> dict[str, int]:
    def count(module):
        return sum(p.numel() for p in module.parameters()) if module is not None else 0

    return dict(
        vision=count(model.vision_tower), guide=count(model.guide_tower),
        projector=count(model.multi_modal_projector), text_guided_mask=count(model.text_guided_mask),
        detail_perceiver=count(model.detail_perceiver), llm=count(model.language_model),
    )


@pytest.mark.parametrize("llm", sorted(EXPECTED))
@pytest.mark.parametrize("prefix, fom, dp", [("tg-llava", True, True), ("llava-1.5", False, False),
                                              ("tg-llava-{}-no-fom", False, True), ("tg-llava-{}-no-dp", True, False)])
def test_real_size_parameter_counts(llm, prefix, fom, dp):
    name = prefix.format(llm) if "{}" in prefix else f"{prefix}-{llm}"
    with torch.device("meta"):
        model = TGLlavaForConditionalGeneration(get_variant(name).config())
    counts = part_counts(model)
    expected = EXPECTED[llm]
    assert counts == dict(
        vision=CLIP_L_336_VISION, guide=CLIP_L_TEXT, projector=expected["projector"],
        text_guided_mask=TG_FOM if fom else 0, detail_perceiver=expected["detail_perceiver"] if dp else 0,
        llm=expected["llm"],
    )


def test_every_preset_validates_and_tiny_is_small():
    for name in list_variants():
        variant = get_variant(name)
        config = variant.config()
        assert config.variant == name and variant.provenance
    with torch.device("meta"):
        tiny = TGLlavaForConditionalGeneration(get_variant("tiny").config())
    assert sum(part_counts(tiny).values()) < 1_000_000


def test_unknown_variant_lists_known_names():
    with pytest.raises(TGLlavaConfigError, match="tg-llava-qwen2-7b"):
        get_variant("tg-llava-qwen3")
