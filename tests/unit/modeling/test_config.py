"""TGLlavaConfig: official defaults, derived sizes, validation errors naming the fields."""

from __future__ import annotations

import pytest

from tg_llava_eval.errors import TGLlavaConfigError
from tg_llava_eval.modeling import TGLlavaConfig
from tg_llava_eval.variants import get_variant


def test_official_defaults_and_derived_sizes():
    config = TGLlavaConfig()
    assert config.num_patches == 576
    assert config.num_query_tokens == 576
    assert config.num_crops == 4
    assert config.num_crop_positions == 2304
    assert config.num_image_tokens == 640
    assert config.guide_max_length == 77
    assert config.qformer_config.encoder_hidden_size == 1024  # = vision width, derived
    assert config.qformer_config.hidden_size == 1024 and config.qformer_config.num_hidden_layers == 2
    assert config.qformer_config.cross_attention_frequency == 2
    assert config.qformer_config.layer_norm_eps == 1e-12
    perceiver = config.perceiver_config
    assert (perceiver.resampler_depth, perceiver.resampler_n_latents) == (2, 64)
    assert (perceiver.resampler_n_heads, perceiver.resampler_head_dim, perceiver.num_key_value_heads) == (16, 96, 4)
    assert perceiver.rms_norm_eps == 1e-5
    assert config.crop_source == "upsampled" and config.vision_feature_layer == -2


def test_baseline_switches_change_image_tokens():
    assert TGLlavaConfig(use_detail_perceiver=False).num_image_tokens == 576
    assert TGLlavaConfig(use_text_guided_mask=False, use_detail_perceiver=False).is_baseline


def test_round_trip_through_dict(tmp_path):
    config = get_variant("tiny").config()
    config.save_pretrained(tmp_path)
    loaded = TGLlavaConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict()
    assert loaded.perceiver_contexts == ["guide", "crops"]
    assert loaded.variant == "tiny"


@pytest.mark.parametrize(
    "kwargs, fields",
    [
        (dict(vision_config=dict(image_size=336, patch_size=13)), ("image_size", "patch_size")),
        (dict(perceiver_contexts=["guide"]), ("perceiver_contexts", "resampler_depth")),
        (dict(perceiver_config=dict(resampler_n_heads=6, num_key_value_heads=4)), ("resampler_n_heads", "num_key_value_heads")),
        (dict(qformer_config=dict(hidden_size=1000, num_attention_heads=16)), ("qformer_config.hidden_size", "num_attention_heads")),
        (dict(image_token_id=40000), ("image_token_id", "vocab_size")),
        (dict(crop_source="native"), ("crop_source",)),
        (dict(guide_padding="none"), ("guide_padding",)),
        (dict(template="chatml"), ("template",)),
        (dict(projector_type="mlp3x"), ("projector_type",)),
        (dict(vision_feature_layer=-40), ("vision_feature_layer", "num_hidden_layers")),
        (dict(crop_grid=0), ("crop_grid",)),
    ],
)
def test_inconsistent_config_names_the_fields(kwargs, fields):
    with pytest.raises(TGLlavaConfigError) as info:
        TGLlavaConfig(**kwargs)
    for field in fields:
        assert field in str(info.value)
