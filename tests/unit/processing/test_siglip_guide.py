"""SigLIP guide tokenisation and padding, and SigLIP image constants (issue #20).

The guide tokenizer is a SentencePiece model trained here with the ``sentencepiece`` package
(``build_sentencepiece_guide_tokenizer``) and wrapped in transformers' ``SiglipTokenizer``. SigLIP's
text tower was trained with ``padding="max_length"`` to its 64 positions and pools the last
position: the processor pads every guide to ``config.guide_max_length`` whatever the batch, so the
guide tower sees exactly what ``SiglipTokenizer(..., padding="max_length")`` gives. Padding like
CLIP's (to the longest guide of the batch) fails these tests.
"""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from transformers import SiglipImageProcessorPil, SiglipTextModel

from tg_llava_eval.processing import (
    TGLlavaProcessor,
    background_colour,
    build_llm_tokenizer,
    build_sentencepiece_guide_tokenizer,
    expand_to_square,
)
from tg_llava_eval.variants import TINY_SIGLIP_GUIDE_VOCAB, get_variant

QUESTIONS = ("What colour is the ball?", "Is there a red square in the top left corner of the image?")


@pytest.fixture(scope="module")
def siglip_tokenizer():
    return build_sentencepiece_guide_tokenizer(TINY_SIGLIP_GUIDE_VOCAB, model_max_length=64)


@pytest.fixture(scope="module")
def config(siglip_tokenizer):
    return get_variant("tiny-siglip").config(guide_config=dict(vocab_size=len(siglip_tokenizer)))


@pytest.fixture(scope="module")
def processor(config, siglip_tokenizer):
    tokenizer = build_llm_tokenizer(config.template)
    config = get_variant("tiny-siglip").config(
        guide_config=dict(vocab_size=len(siglip_tokenizer)),
        text_config=dict(vocab_size=len(tokenizer)),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    return TGLlavaProcessor.from_config(config, tokenizer, siglip_tokenizer)


def test_sentencepiece_tokenizer_has_siglip_layout_and_is_deterministic(siglip_tokenizer):
    assert type(siglip_tokenizer).__name__ == "SiglipTokenizer" and len(siglip_tokenizer) == TINY_SIGLIP_GUIDE_VOCAB
    assert (siglip_tokenizer.eos_token_id, siglip_tokenizer.pad_token_id, siglip_tokenizer.bos_token_id) == (1, 1, None)
    assert siglip_tokenizer.convert_ids_to_tokens([0, 1, 2]) == ["<pad>", "</s>", "<unk>"]
    ids = siglip_tokenizer(QUESTIONS[0])["input_ids"]
    assert ids[-1] == 1 and 2 not in ids  # </s> appended, every word of the corpus known
    again = build_sentencepiece_guide_tokenizer(TINY_SIGLIP_GUIDE_VOCAB)
    assert [again(q)["input_ids"] for q in QUESTIONS] == [siglip_tokenizer(q)["input_ids"] for q in QUESTIONS]


def test_guides_are_padded_to_max_length_as_siglip_expects(processor, siglip_tokenizer, config):
    assert processor.guide_max_length == config.guide_max_length == 64 and processor.guide_pad_to_max_length
    guides = [processor.tokenize_guide(q) for q in QUESTIONS]
    ids, mask = processor.pad_guides(guides)
    # Not the longest guide (CLIP's rule): the tower's 64 positions, its last one a pad.
    assert ids.shape == (2, 64) and max(len(g) for g in guides) < 64
    assert (ids[:, -1] == siglip_tokenizer.pad_token_id).all()
    reference = siglip_tokenizer(list(QUESTIONS), padding="max_length", max_length=64, return_tensors="pt")
    torch.testing.assert_close(ids, reference["input_ids"], rtol=0, atol=0)
    torch.testing.assert_close(mask, reference["attention_mask"], rtol=0, atol=0)
    # A guide does not depend on its batch: alone it is the same row.
    alone, _ = processor.pad_guides(guides[:1])
    torch.testing.assert_close(alone[0], ids[0], rtol=0, atol=0)


def test_pooled_guide_equals_siglip_with_its_own_padding(processor, siglip_tokenizer, config):
    """What TG-FOM receives is SigLIP's pooled output of ``padding="max_length"`` input; with the guide
    padded like CLIP's (to the longest) the pooled position would be a real token and differ."""
    torch.manual_seed(0)
    tower = SiglipTextModel(config.guide_config).eval()
    batch = processor(["<image>\nq", "<image>\nq"], [Image.new("RGB", (8, 8))] * 2, list(QUESTIONS))
    with torch.no_grad():
        ours = tower(input_ids=batch["guide_input_ids"]).pooler_output
        siglip_ids = siglip_tokenizer(list(QUESTIONS), padding="max_length", max_length=64, return_tensors="pt")
        reference = tower(input_ids=siglip_ids["input_ids"]).pooler_output
        longest = siglip_tokenizer(list(QUESTIONS), padding="longest", return_tensors="pt")["input_ids"]
        clip_like = tower(input_ids=longest).pooler_output
    torch.testing.assert_close(ours, reference, rtol=0, atol=0)
    assert not torch.allclose(ours, clip_like, atol=1e-4)


def test_guide_length_comes_from_the_guide_config(siglip_tokenizer):
    tokenizer = build_llm_tokenizer("qwen_2_bare")
    config = get_variant("tiny-siglip").config(
        guide_config=dict(vocab_size=len(siglip_tokenizer), max_position_embeddings=16),
        text_config=dict(vocab_size=len(tokenizer)), image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    processor = TGLlavaProcessor.from_config(config, tokenizer, siglip_tokenizer)
    long_question = " ".join(["what colour is the ball"] * 10)
    guide = processor.tokenize_guide(long_question)
    assert len(guide) == 16 and guide[-1] == siglip_tokenizer.eos_token_id  # cut, EOS kept
    ids, _ = processor.pad_guides([guide, processor.tokenize_guide(QUESTIONS[0])])
    assert ids.shape == (2, 16)


def test_save_and_load_keep_the_padding_rule(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    settings = json.loads((tmp_path / "processor_config.json").read_text())
    assert settings["guide_pad_to_max_length"] is True and settings["guide_max_length"] == 64
    loaded = TGLlavaProcessor.from_pretrained(tmp_path)
    assert type(loaded.guide_tokenizer).__name__ == "SiglipTokenizer" and loaded.guide_pad_to_max_length
    ids, _ = loaded.pad_guides([loaded.tokenize_guide(QUESTIONS[0])])
    assert ids.shape == (1, 64)
    assert loaded.to_dict() == processor.to_dict()


def test_clip_processor_config_is_unchanged(make_processor, tmp_path):
    clip = make_processor("qwen_2")
    assert "guide_pad_to_max_length" not in clip.to_dict() and clip.guide_pad_to is None


def test_siglip_image_constants_match_siglips_own_processor(processor):
    """Pad colour from SigLIP's mean (127, 127, 127) and pixels equal ``SiglipImageProcessorPil`` on the square."""
    assert tuple(processor.image_processor.image_mean) == tuple(SiglipImageProcessorPil.image_mean)
    assert tuple(processor.image_processor.image_std) == tuple(SiglipImageProcessorPil.image_std)
    assert processor.image_preprocessor.background == (127, 127, 127) == background_colour([0.5] * 3)
    image = Image.new("RGB", (90, 40), (200, 30, 10))
    image.paste((10, 200, 30), (10, 5, 40, 30))
    size = processor.image_size
    assert size == 60
    ours = processor.preprocess_image(image).pixel_values
    square = expand_to_square(image, (127, 127, 127))
    reference = SiglipImageProcessorPil(size={"height": size, "width": size})(square, return_tensors="pt")["pixel_values"][0]
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-6)
