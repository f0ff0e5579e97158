"""The official -> HF key table: strict, reported, refusing a do-nothing TG-FOM; directory conversion."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from tg_llava_eval.checkpoints.converting import convert_checkpoint, map_official_key, official_to_hf
from tg_llava_eval.errors import TGLlavaCheckpointError
from tg_llava_eval.modeling import TGLlavaForConditionalGeneration

from .modeling.official_fixture import official_key_table, official_keys, official_state_dict


@pytest.mark.slow
def test_every_official_key_is_mapped_or_dropped_with_a_reason():
    keys = [key for key, _, _ in official_keys()]
    result = official_to_hf(official_state_dict("sin"))
    assert len(result.renamed) + len(result.dropped) == len(keys) == 108
    assert set(result.dropped) == set(official_key_table()["unused_in_forward"]["not_computed"])
    assert "MLM head" in result.report() and "dropped 22" in result.report()


def test_unknown_key_is_an_error_naming_it():
    with pytest.raises(TGLlavaCheckpointError, match="model.mm_cross_attn.extra_gate"):
        map_official_key("model.mm_cross_attn.extra_gate")


@pytest.mark.slow
def test_all_zero_mask_refused_unless_allowed():
    state = official_state_dict("sin")
    state["model.mm_cross_attn.zero_layer.weight"] = torch.zeros_like(state["model.mm_cross_attn.zero_layer.weight"])
    state["model.mm_cross_attn.zero_layer.bias"] = torch.zeros_like(state["model.mm_cross_attn.zero_layer.bias"])
    with pytest.raises(TGLlavaCheckpointError, match="all zeros"):
        official_to_hf(state)
    assert official_to_hf(state, allow_zero_text_guided_mask=True).state_dict


# Inverse of the rename table for our tiny model, to write an official-layout folder.
OFFICIAL_PREFIXES = [
    ("multi_modal_projector.linear_1.", "model.mm_projector.0."),
    ("multi_modal_projector.linear_2.", "model.mm_projector.2."),
    ("text_guided_mask.query_tokens", "model.mm_cross_attn.query_tokens"),
    ("text_guided_mask.guide_projection.", "model.mm_cross_attn.resize_linear."),
    ("text_guided_mask.output_projection.", "model.mm_cross_attn.zero_layer."),
    ("text_guided_mask.qformer.layernorm.", "model.mm_cross_attn.Qformer.bert.embeddings.LayerNorm."),
    ("text_guided_mask.qformer.encoder.", "model.mm_cross_attn.Qformer.bert.encoder."),
    ("detail_perceiver.pre_mlp.linear_1.", "model.mm_patch_encoder.pre_mlp.0."),
    ("detail_perceiver.pre_mlp.linear_2.", "model.mm_patch_encoder.pre_mlp.2."),
    ("detail_perceiver.output_projection.linear_1.", "model.mm_patch_encoder.proj.0."),
    ("detail_perceiver.output_projection.linear_2.", "model.mm_patch_encoder.proj.2."),
    ("detail_perceiver.guide_projection.", "model.mm_patch_encoder.resize_linear."),
    ("detail_perceiver.position_embedding.", "model.mm_patch_encoder.position_embedding."),
    ("detail_perceiver.latents", "model.mm_patch_encoder.perceiver.latents"),
    ("detail_perceiver.layers.", "model.mm_patch_encoder.perceiver.layers."),
    ("detail_perceiver.norm.", "model.mm_patch_encoder.perceiver.norm."),
    ("vision_tower.", "model.vision_tower.vision_tower.vision_model."),
    ("guide_tower.", "model.text_tower.text_tower.text_model."),
    ("language_model.model.", "model."),
    ("language_model.lm_head.", "lm_head."),
]


def to_official(key: str) -> str:
    for ours, theirs in OFFICIAL_PREFIXES:
        if key.startswith(ours):
            key = theirs + key[len(ours):]
            break
    return key.replace(".attention.attention.", ".attention.self.").replace(".crossattention.attention.", ".crossattention.self.")


def test_directory_conversion_round_trip(tiny_checkpoint, tmp_path):
    source = TGLlavaForConditionalGeneration.from_pretrained(tiny_checkpoint).eval()
    with torch.no_grad():
        source.text_guided_mask.output_projection.weight.normal_(0, 0.1)
    official = tmp_path / "official"
    official.mkdir()
    vocab_rows = 800  # the official tokenizer has no <image>: fewer embedding rows than ours
    state = {to_official(k): v.clone() for k, v in source.state_dict().items() if not k.endswith("position_ids")}
    for key in ("model.embed_tokens.weight", "lm_head.weight"):
        state[key] = state[key][:vocab_rows].clone()
    save_file(state, str(official / "model.safetensors"))
    (official / "config.json").write_text(json.dumps({"model_type": "llava_qwen_text_learnable_query"}))
    source_tokenizer = __import__("transformers").AutoTokenizer.from_pretrained(str(tiny_checkpoint))
    source_tokenizer.save_pretrained(official)
    out = tmp_path / "ours"
    report = convert_checkpoint(official, out, variant="tiny", dtype="float32")
    assert f"converted {len(state)} tensors, dropped 0 unused keys" in report
    converted = TGLlavaForConditionalGeneration.from_pretrained(out)
    for key, value in source.state_dict().items():
        if key.endswith("position_ids"):
            continue
        if key in ("language_model.model.embed_tokens.weight", "language_model.lm_head.weight"):
            assert torch.equal(converted.state_dict()[key][:vocab_rows], value[:vocab_rows])
        else:
            assert torch.equal(converted.state_dict()[key], value), key
    wrong = tmp_path / "wrong"
    with pytest.raises(TGLlavaCheckpointError, match="llama"):
        (official / "config.json").write_text(json.dumps({"model_type": "llava_llama_text_learnable_query"}))
        convert_checkpoint(official, wrong, variant="tiny")


def test_to_hf_llava_refuses_tg_weights():
    from tg_llava_eval.checkpoints.converting import to_hf_llava_state_dict

    with pytest.raises(TGLlavaCheckpointError, match="text_guided_mask"):
        to_hf_llava_state_dict({"text_guided_mask.query_tokens": torch.zeros(1)})


def test_hf_llava_config_refuses_tg_config():
    from tg_llava_eval.checkpoints.converting import hf_llava_config
    from tg_llava_eval.variants import get_variant

    with pytest.raises(TGLlavaCheckpointError, match="both TG switches off"):
        hf_llava_config(get_variant("tiny").config())
    hf = hf_llava_config(get_variant("tiny-baseline").config())
    assert hf.image_seq_length == get_variant("tiny-baseline").config().num_patches
