"""TGLlavaForConditionalGeneration at tiny sizes: shapes, the zero-init mask, errors, save/load,
module groups, generation, and equality with transformers' LLaVA when both TG switches are off."""

from __future__ import annotations

import pytest
import torch
from transformers import LlavaForConditionalGeneration

from tg_llava_eval.checkpoints.converting import hf_llava_config, to_hf_llava_state_dict
from tg_llava_eval.errors import TGLlavaInputError
from tg_llava_eval.modeling import TGLlavaForConditionalGeneration
from tg_llava_eval.variants import get_variant


def tiny_model(name: str = "tiny", seed: int = 0, **overrides) -> TGLlavaForConditionalGeneration:
    torch.manual_seed(seed)
    return TGLlavaForConditionalGeneration(get_variant(name).config(**overrides)).eval()


def batch_inputs(config, batch: int = 2, text: int = 5, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    size = config.image_size
    image = torch.full((batch, config.num_image_tokens), config.image_token_id)
    prefix = torch.randint(0, config.image_token_id, (batch, 3), generator=generator)
    suffix = torch.randint(0, config.image_token_id, (batch, text), generator=generator)
    input_ids = torch.cat([prefix, image, suffix], dim=1)
    return dict(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        pixel_values=torch.randn(batch, 3, size, size, generator=generator),
        crop_pixel_values=torch.randn(batch, config.num_crops, 3, size, size, generator=generator),
        guide_input_ids=torch.randint(0, config.guide_config.bos_token_id, (batch, 7), generator=generator),
        guide_attention_mask=torch.ones(batch, 7, dtype=torch.long),
    )


def test_shapes_of_the_public_steps():
    model = tiny_model()
    config = model.config
    inputs = batch_inputs(config)
    patch, crops = model.get_image_features(inputs["pixel_values"], inputs["crop_pixel_values"])
    assert patch.shape == (2, config.num_patches, config.vision_config.hidden_size)
    assert crops.shape == (2, config.num_crops, config.num_patches, config.vision_config.hidden_size)
    pooled, states = model.get_guide_features(inputs["guide_input_ids"], inputs["guide_attention_mask"])
    tokens = model.fuse_visual_features(patch, crops, pooled, states)
    assert tokens.shape == (2, config.num_image_tokens, config.text_config.hidden_size)
    out = model(**inputs)
    assert out.logits.shape == (*inputs["input_ids"].shape, config.text_config.vocab_size)


def test_zero_initialised_mask_is_a_no_op():
    model = tiny_model()
    inputs = batch_inputs(model.config)
    patch, crops = model.get_image_features(inputs["pixel_values"], inputs["crop_pixel_values"])
    pooled, states = model.get_guide_features(inputs["guide_input_ids"])
    assert not model.text_guided_mask.output_projection.weight.any()
    assert torch.equal(model.text_guided_mask(pooled), torch.zeros_like(patch))
    with_mask = model.fuse_visual_features(patch, crops, pooled, states)
    assert torch.equal(with_mask[:, : model.config.num_patches], model.multi_modal_projector(patch))


def test_guide_text_changes_visual_tokens_once_trained():
    model = tiny_model()
    with torch.no_grad():
        model.text_guided_mask.output_projection.weight.normal_(0, 0.5)
    inputs = batch_inputs(model.config)
    patch, crops = model.get_image_features(inputs["pixel_values"], inputs["crop_pixel_values"])
    a = model.fuse_visual_features(patch, crops, *model.get_guide_features(inputs["guide_input_ids"]))
    other = inputs["guide_input_ids"].flip(-1)
    b = model.fuse_visual_features(patch, crops, *model.get_guide_features(other))
    assert (a[:, : model.config.num_patches] - b[:, : model.config.num_patches]).abs().max() > 1e-4
    assert (a[:, model.config.num_patches :] - b[:, model.config.num_patches :]).abs().max() > 1e-6


def test_guide_padding_is_masked_in_tg_dp_by_default():
    model = tiny_model()
    inputs = batch_inputs(model.config, batch=1)
    patch, crops = model.get_image_features(inputs["pixel_values"], inputs["crop_pixel_values"])
    ids = inputs["guide_input_ids"]
    pad = model.config.guide_config.pad_token_id
    padded = torch.cat([ids, torch.full((1, 5), pad)], dim=1)
    mask = torch.cat([torch.ones(1, 7, dtype=torch.long), torch.zeros(1, 5, dtype=torch.long)], dim=1)
    alone = model.fuse_visual_features(patch, crops, *model.get_guide_features(ids))
    pooled, states = model.get_guide_features(padded, mask)
    masked = model.fuse_visual_features(patch, crops, pooled, states, mask)
    torch.testing.assert_close(masked, alone, atol=1e-5, rtol=1e-5)
    official = tiny_model(guide_padding="official")
    official.load_state_dict(model.state_dict())
    unmasked = official.fuse_visual_features(patch, crops, pooled, states, mask)
    assert (unmasked - alone).abs().max() > 1e-6  # the official quirk: padding reaches TG-DP


def test_image_token_count_mismatch_names_both_counts():
    model = tiny_model()
    inputs = batch_inputs(model.config)
    n_features = int((inputs["input_ids"][1] == model.config.image_token_id).sum())
    inputs["input_ids"][1, 3] = 0  # one image token fewer in sample 1
    with pytest.raises(TGLlavaInputError, match=rf"sample\(s\) \[1\].*\[{n_features - 1}\].*{n_features} features"):
        model(**inputs)


def test_text_only_rows_ignore_their_image():
    model = tiny_model()
    inputs = batch_inputs(model.config)
    text_only = inputs["input_ids"].clone()
    text_only[1, text_only[1] == model.config.image_token_id] = 5
    inputs["input_ids"] = text_only
    out = model(**inputs)
    alone = model.language_model(input_ids=text_only[1:], attention_mask=inputs["attention_mask"][1:])
    torch.testing.assert_close(out.logits[1:], alone.logits, atol=1e-5, rtol=1e-5)


def test_missing_guide_is_a_clear_error():
    model = tiny_model()
    inputs = batch_inputs(model.config)
    inputs.pop("guide_input_ids")
    with pytest.raises(TGLlavaInputError, match="guide_input_ids"):
        model(**inputs)


def test_save_load_round_trip(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path)
    loaded = TGLlavaForConditionalGeneration.from_pretrained(tmp_path).eval()
    inputs = batch_inputs(model.config)
    assert torch.equal(model(**inputs).logits, loaded(**inputs).logits)
    assert not any(p.requires_grad for p in loaded.vision_tower.parameters())
    assert not any(p.requires_grad for p in loaded.guide_tower.parameters())


def test_module_groups():
    model = tiny_model()
    assert list(model.trainable_groups()) == ["projector", "text_guided_mask", "detail_perceiver", "llm"]
    assert list(tiny_model("tiny-baseline").trainable_groups()) == ["projector", "llm"]
    assert list(tiny_model("tiny-no-fom").trainable_groups()) == ["projector", "detail_perceiver", "llm"]
    grouped = {id(p) for g in (*model.trainable_groups().values(), *model.frozen_groups().values()) for p in g.parameters()}
    assert grouped == {id(p) for p in model.parameters()}  # every parameter belongs to one group


def test_generate_uses_kv_cache_and_matches_full_forward():
    model = tiny_model()
    inputs = batch_inputs(model.config, batch=1)
    out = model.generate(**inputs, max_new_tokens=6, do_sample=False, use_cache=True, eos_token_id=None)
    nocache = model.generate(**inputs, max_new_tokens=6, do_sample=False, use_cache=False, eos_token_id=None)
    assert torch.equal(out, nocache)
    # The first new token is the argmax of a plain forward.
    first = model(**inputs).logits[0, -1].argmax()
    assert out[0, inputs["input_ids"].shape[1]] == first


def test_baseline_equals_transformers_llava():
    """Both switches off = LLaVA-1.5: same logits as LlavaForConditionalGeneration, same weights."""
    ours = tiny_model("tiny-baseline")
    config = ours.config
    hf = LlavaForConditionalGeneration(hf_llava_config(config)).eval()
    mapped = to_hf_llava_state_dict(ours.state_dict())
    missing, unexpected = hf.load_state_dict(mapped, strict=False)
    assert unexpected == [] and [k for k in missing if not k.endswith("position_ids")] == []
    inputs = batch_inputs(config)
    ours_logits = ours(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                       pixel_values=inputs["pixel_values"]).logits
    hf_logits = hf(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                   pixel_values=inputs["pixel_values"]).logits
    torch.testing.assert_close(ours_logits, hf_logits, atol=1e-5, rtol=1e-5)
