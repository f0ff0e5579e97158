"""SigLIP as the vision tower and as the guide tower (issue #20), on tiny random SigLIP configs.

What the model reads from each SigLIP tower, with transformers' own ``SiglipVisionModel`` /
``SiglipTextModel`` as the reference: all hidden states are patches (no CLS to drop); TG-FOM reads
the text model's ``pooler_output`` (its ``head`` on the last position, width ``projection_size``),
TG-DP its ``last_hidden_state``; the text tower runs without an attention mask, as SigLIP was
trained. Sizes derive from the sub-configs and mismatches fail at construction naming the fields.
"""

from __future__ import annotations

import pytest
import torch

from tg_llava_eval.errors import TGLlavaConfigError
from tg_llava_eval.modeling import TGLlavaConfig, TGLlavaForConditionalGeneration
from tg_llava_eval.variants import get_variant

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model() -> TGLlavaForConditionalGeneration:
    torch.manual_seed(0)
    config = get_variant("tiny-siglip").config()
    tg = TGLlavaForConditionalGeneration(config).eval()
    # A non-zero TG-FOM output layer, so that the mask (and hence the guide) reaches the logits.
    with torch.no_grad():
        tg.text_guided_mask.output_projection.weight.normal_(std=0.02)
    return tg


def _guide(config: TGLlavaConfig, batch: int = 2, real: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded guide ids of ``real`` tokens, padded to the tower's length as SigLIP expects."""
    guide = config.guide_config
    ids = torch.full((batch, config.guide_max_length), guide.pad_token_id)
    ids[:, :real] = torch.randint(3, guide.vocab_size, (batch, real))
    ids[:, real - 1] = guide.eos_token_id
    mask = torch.zeros_like(ids)
    mask[:, :real] = 1
    return ids, mask


def test_sizes_are_derived_from_the_siglip_sub_configs():
    tiny = get_variant("tiny-siglip").config()
    # 60 px / patch 14: the valid convolution gives 4 x 4 patches, as so400m's 384 / 14 gives 27 x 27.
    assert (tiny.num_patches, tiny.num_query_tokens, tiny.num_crop_positions) == (16, 16, 64)
    assert (tiny.guide_max_length, tiny.guide_pooled_size, tiny.guide_pad_to_max_length) == (64, 20, True)
    assert not tiny.vision_has_cls_token
    real = get_variant("tg-llava-qwen2-7b-siglip").config()
    assert (real.num_patches, real.num_query_tokens, real.num_crop_positions) == (27 * 27, 729, 4 * 729)
    assert (real.num_image_tokens, real.guide_max_length, real.guide_pooled_size) == (729 + 64, 64, 1152)
    # The CLIP presets are unchanged.
    clip = get_variant("tg-llava-qwen2-7b").config()
    assert (clip.num_patches, clip.num_crop_positions, clip.guide_max_length, clip.guide_pooled_size) == (576, 2304, 77, 768)
    assert clip.vision_has_cls_token and not clip.guide_pad_to_max_length


def test_modules_are_built_from_the_siglip_widths(model):
    config = model.config
    assert type(model.vision_tower).__name__ == "SiglipVisionModel"
    assert type(model.guide_tower).__name__ == "SiglipTextModel"
    assert not hasattr(model.vision_tower, "head")  # vision_use_head=False: never read
    fom, dp = model.text_guided_mask, model.detail_perceiver
    # TG-FOM reads the pooled output (projection_size 20), TG-DP the hidden states (hidden_size 24).
    assert fom.guide_projection.in_features == config.guide_config.projection_size == 20
    assert dp.guide_projection.in_features == config.guide_config.hidden_size == 24
    assert fom.query_tokens.shape[1] == config.num_patches
    assert dp.position_embedding.num_embeddings == config.num_crops * config.num_patches


def test_patch_features_keep_every_siglip_hidden_state(model):
    pixels = torch.randn(2, 3, 60, 60)
    crops = torch.randn(2, 4, 3, 60, 60)
    patches, crop_features = model.get_image_features(pixels, crops)
    reference = model.vision_tower(pixels, output_hidden_states=True).hidden_states[model.config.vision_feature_layer]
    assert reference.shape == (2, 16, 32)  # SigLIP: patches only, no CLS
    torch.testing.assert_close(patches, reference, rtol=0, atol=0)
    assert crop_features.shape == (2, 4, 16, 32)


def test_guide_features_are_siglip_pooled_output_without_a_mask(model):
    config = model.config
    ids, mask = _guide(config)
    pooled, states = model.get_guide_features(ids, mask)
    tower = model.guide_tower
    unmasked = tower(input_ids=ids)
    torch.testing.assert_close(pooled, unmasked.pooler_output, rtol=0, atol=0)
    torch.testing.assert_close(states, unmasked.last_hidden_state, rtol=0, atol=0)
    # pooler_output is SigLIP's head on the last position (a pad, as trained), not the EOS state.
    torch.testing.assert_close(pooled, tower.head(unmasked.last_hidden_state[:, -1]), rtol=1e-6, atol=1e-6)
    assert pooled.shape == (2, config.guide_config.projection_size)
    # The mask is not passed to the tower: with it, SigLIP would see a different input.
    masked = tower(input_ids=ids, attention_mask=mask).pooler_output
    assert not torch.allclose(masked, pooled)


def test_tg_fom_and_tg_dp_read_pooled_output_and_hidden_states(model):
    config = model.config
    ids, mask = _guide(config)
    seen = {}

    def record(name, start):
        def hook(module, args, output):
            seen[name] = args[start:]  # returns None: the output is kept
        return hook

    handles = [model.text_guided_mask.register_forward_hook(record("fom", 0)),
               model.detail_perceiver.register_forward_hook(record("dp", 1))]
    patches = torch.randn(2, config.num_patches, 32)
    crops = torch.randn(2, config.num_crops, config.num_patches, 32)
    pooled, states = model.get_guide_features(ids, mask)
    try:
        tokens = model.fuse_visual_features(patches, crops, pooled, states, mask)
    finally:
        for handle in handles:
            handle.remove()
    assert tokens.shape == (2, config.num_image_tokens, config.text_config.hidden_size)
    torch.testing.assert_close(seen["fom"][0], pooled)
    torch.testing.assert_close(seen["dp"][0], states)
    assert seen["dp"][0].shape[1] == config.guide_max_length == 64
    torch.testing.assert_close(seen["dp"][1], mask)


def test_mixed_towers_build_and_run():
    """SigLIP vision with the CLIP guide, and CLIP vision with the SigLIP guide."""
    torch.manual_seed(0)
    for name, vision, guide in (("tiny-siglip-vision", "SiglipVisionModel", "CLIPTextModel"),
                                ("tiny-siglip-guide", "CLIPVisionModel", "SiglipTextModel")):
        tg = TGLlavaForConditionalGeneration(get_variant(name).config()).eval()
        assert (type(tg.vision_tower).__name__, type(tg.guide_tower).__name__) == (vision, guide)
        size = tg.config.image_size
        patches, crops = tg.get_image_features(torch.randn(1, 3, size, size), torch.randn(1, 4, 3, size, size))
        assert patches.shape == (1, tg.config.num_patches, tg.config.vision_config.hidden_size)
        ids, mask = _guide(tg.config, batch=1)
        tokens = tg.fuse_visual_features(patches, crops, *tg.get_guide_features(ids, mask), mask)
        assert tokens.shape[1] == tg.config.num_image_tokens


def test_generate_with_siglip_towers(model):
    config = model.config
    ids, mask = _guide(config, batch=1)
    input_ids = torch.tensor([[5] + [config.image_token_id] * config.num_image_tokens + [6, 7]])
    out = model.generate(
        input_ids=input_ids, attention_mask=torch.ones_like(input_ids), pixel_values=torch.randn(1, 3, 60, 60),
        crop_pixel_values=torch.randn(1, 4, 3, 60, 60), guide_input_ids=ids, guide_attention_mask=mask,
        max_new_tokens=3, do_sample=False,
    )
    assert out.shape == (1, input_ids.shape[1] + 3)


def _siglip_vision(**overrides):
    return dict(get_variant("tiny-siglip").config().vision_config.to_dict(), **overrides)


def test_mismatched_combinations_fail_naming_the_fields():
    with pytest.raises(TGLlavaConfigError, match=r"vision_config.model_type='dinov2' is not a vision tower"):
        TGLlavaConfig(vision_config=dict(model_type="dinov2", hidden_size=32, num_hidden_layers=2,
                                         num_attention_heads=4, intermediate_size=64, image_size=56, patch_size=14))
    with pytest.raises(TGLlavaConfigError, match=r"guide_config.model_type='bert' is not a guide tower"):
        TGLlavaConfig(guide_config=dict(model_type="bert"))
    # CLIP keeps its strict patch grid; SigLIP's valid convolution drops the remainder (384 / 14).
    clip_vision = dict(get_variant("tiny").config().vision_config.to_dict(), image_size=60)
    with pytest.raises(TGLlavaConfigError, match=r"vision_config.image_size \(60\) must be a multiple of vision_config.patch_size \(14\)"):
        TGLlavaConfig(vision_config=clip_vision)
    assert TGLlavaConfig(vision_config=_siglip_vision(image_size=60)).num_patches == 16
    with pytest.raises(TGLlavaConfigError, match=r"vision_config.image_size \(10\) is smaller than vision_config.patch_size \(14\)"):
        TGLlavaConfig(vision_config=_siglip_vision(image_size=10))
    with pytest.raises(TGLlavaConfigError, match=r"vision_config.image_size must be one integer"):
        TGLlavaConfig(vision_config=_siglip_vision(image_size=[60, 30]))
    with pytest.raises(TGLlavaConfigError, match=r"guide_config.pad_token_id \(999\) is outside guide_config.vocab_size"):
        get_variant("tiny-siglip").config(guide_config=dict(pad_token_id=999))
    # SigLIP pools the last position, so its (unused) EOS id is not checked against the vocabulary;
    # CLIP pools at EOS and is.
    assert get_variant("tiny-siglip").config(guide_config=dict(eos_token_id=999)).guide_config.eos_token_id == 999
    with pytest.raises(TGLlavaConfigError, match=r"guide_config.eos_token_id \(9999\) is outside"):
        get_variant("tiny").config(guide_config=dict(eos_token_id=9999))


def test_config_round_trips_the_tower_types(tmp_path):
    config = get_variant("tiny-siglip-guide").config()
    config.save_pretrained(tmp_path)
    loaded = TGLlavaConfig.from_pretrained(tmp_path)
    assert (loaded.vision_config.model_type, loaded.guide_config.model_type) == ("clip_vision_model", "siglip_text_model")
    assert (loaded.guide_pooled_size, loaded.num_patches) == (config.guide_pooled_size, config.num_patches)
