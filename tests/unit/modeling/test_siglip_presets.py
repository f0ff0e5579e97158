"""The SigLIP presets of the catalogue at real width, on the meta device, with pinned counts.

Tower widths: ``google/siglip-so400m-patch14-384`` config.json (cited in each variant's provenance):
vision and text 1152 wide, MLP 4304, 27 layers, 16 heads; 384 px, patch 14; text vocabulary 32000,
64 positions. SigLIP so400m's vision tower without its (never read) pooling head has 412,987,248
parameters, its text tower (with the ``head`` that makes ``pooler_output``) 449,734,896. The TG
modules follow from the widths; the deltas to the CLIP presets are checked by formula below.
"""

from __future__ import annotations

import pytest
import torch

from tg_llava_eval.modeling import TGLlavaForConditionalGeneration
from tg_llava_eval.variants import PAPER_LLMS, TOWER_SETS, VARIANTS, get_variant

CLIP_L_336_VISION = 303_507_456
CLIP_L_TEXT = 123_060_480
SIGLIP_SO400M_VISION = 412_987_248
SIGLIP_SO400M_TEXT = 449_734_896
#: TG-FOM per tower set (it does not depend on the LLM).
TG_FOM = {"siglip-guide": 32_215_040, "siglip-vision": 32_470_272, "siglip": 32_912_640}
#: (projector, TG-DP) per LLM and tower set.
PROJECTOR_DP = {
    ("vicuna-13b", "siglip-guide"): (31_467_520, 70_209_536),
    ("vicuna-13b", "siglip-vision"): (32_122_880, 70_947_328),
    ("vicuna-13b", "siglip"): (32_122_880, 71_340_544),
    ("llama3-8b", "siglip-guide"): (20_979_712, 59_721_728),
    ("llama3-8b", "siglip-vision"): (21_504_000, 60_459_520),
    ("llama3-8b", "siglip"): (21_504_000, 60_852_736),
    ("qwen2-7b", "siglip-guide"): (16_522_240, 55_264_256),
    ("qwen2-7b", "siglip-vision"): (16_980_992, 56_002_048),
    ("qwen2-7b", "siglip"): (16_980_992, 56_395_264),
}
LLM = {"vicuna-13b": 13_016_519_680, "llama3-8b": 8_030_785_536, "qwen2-7b": 7_615_616_512}
LLM_WIDTH = {"vicuna-13b": 5120, "llama3-8b": 4096, "qwen2-7b": 3584}
#: Official (CLIP) counts of tests/unit/test_variants.py.
CLIP_TG_FOM = 81_474_362 - 49_652_538
CLIP_PROJECTOR_DP = {"vicuna-13b": (31_467_520, 69_816_320), "llama3-8b": (20_979_712, 59_328_512),
                     "qwen2-7b": (16_522_240, 54_871_040)}
SIGLIP_WIDTH, CLIP_VISION_WIDTH, CLIP_TEXT_WIDTH, QFORMER_WIDTH, PERCEIVER_WIDTH = 1152, 1024, 768, 1024, 1024


def _counts(name: str) -> dict[str, int]:
    with torch.device("meta"):
        model = TGLlavaForConditionalGeneration(get_variant(name).config())

    def count(module):
        return sum(p.numel() for p in module.parameters())

    return dict(vision=count(model.vision_tower), guide=count(model.guide_tower),
                projector=count(model.multi_modal_projector), text_guided_mask=count(model.text_guided_mask),
                detail_perceiver=count(model.detail_perceiver), llm=count(model.language_model))


@pytest.mark.parametrize("llm", PAPER_LLMS)
@pytest.mark.parametrize("towers", ["siglip-guide", "siglip-vision", "siglip"])
def test_real_width_parameter_counts(llm, towers):
    siglip_vision = TOWER_SETS[towers].vision.key == "siglip"
    siglip_guide = TOWER_SETS[towers].guide.key == "siglip"
    projector, dp = PROJECTOR_DP[(llm, towers)]
    assert _counts(f"tg-llava-{llm}{TOWER_SETS[towers].name_suffix}") == dict(
        vision=SIGLIP_SO400M_VISION if siglip_vision else CLIP_L_336_VISION,
        guide=SIGLIP_SO400M_TEXT if siglip_guide else CLIP_L_TEXT,
        projector=projector, text_guided_mask=TG_FOM[towers], detail_perceiver=dp, llm=LLM[llm],
    )


@pytest.mark.parametrize("llm", PAPER_LLMS)
def test_count_deltas_follow_from_the_widths(llm):
    """The pinned numbers are the CLIP ones plus what the wider towers add, module by module."""
    clip_projector, clip_dp = CLIP_PROJECTOR_DP[llm]
    guide_delta = SIGLIP_WIDTH - CLIP_TEXT_WIDTH  # rows of the guide projections
    # SigLIP guide: TG-FOM's and TG-DP's guide projections read 1152 instead of 768 features.
    assert TG_FOM["siglip-guide"] == CLIP_TG_FOM + guide_delta * QFORMER_WIDTH
    assert PROJECTOR_DP[(llm, "siglip-guide")] == (clip_projector, clip_dp + guide_delta * PERCEIVER_WIDTH)
    # SigLIP vision: the projector reads 1152 features.
    vision_delta = SIGLIP_WIDTH - CLIP_VISION_WIDTH
    assert PROJECTOR_DP[(llm, "siglip-vision")][0] == clip_projector + vision_delta * LLM_WIDTH[llm]
    # Both: the vision-side deltas plus the guide projection of TG-DP.
    siglip_projector, siglip_dp = PROJECTOR_DP[(llm, "siglip")]
    assert siglip_projector == PROJECTOR_DP[(llm, "siglip-vision")][0]
    assert siglip_dp == PROJECTOR_DP[(llm, "siglip-vision")][1] + guide_delta * PERCEIVER_WIDTH
    # TG-DP's position table: 4 crops x 729 patches of width 1152 instead of 4 x 576 x 1024.
    positions = 4 * 27 * 27 * SIGLIP_WIDTH - 4 * 576 * CLIP_VISION_WIDTH
    pre_mlp_first = vision_delta * PERCEIVER_WIDTH
    assert PROJECTOR_DP[(llm, "siglip-vision")][1] == clip_dp + positions + pre_mlp_first


def test_presets_name_their_towers_and_cite_the_so400m_config():
    for llm in PAPER_LLMS:
        for key in ("siglip-guide", "siglip-vision", "siglip"):
            variant = VARIANTS[f"tg-llava-{llm}{TOWER_SETS[key].name_suffix}"]
            assert "google/siglip-so400m-patch14-384 config.json" in variant.provenance
            assert variant.method == "TG-LLaVA" and variant.towers.key == key
            assert variant.vlmevalkit_name.endswith(TOWER_SETS[key].vlmevalkit_suffix)
            assert variant.lmms_eval_id == variant.name.replace("-", "_")
            assert "SigLIP" in variant.tower_label and "SigLIP" in variant.label
    assert get_variant("tg-llava-qwen2-7b-siglip-guide").vlmevalkit_name == "TG-LLaVA-Qwen2-7B-SigLIP-Guide"
    assert get_variant("tg-llava-qwen2-7b").tower_label == "CLIP ViT-L/14-336 vision, CLIP-L text guide"
    names = {v.vlmevalkit_name for v in VARIANTS.values() if v.vlmevalkit_name}
    assert len(names) == sum(1 for v in VARIANTS.values() if v.vlmevalkit_name)  # no clashes
