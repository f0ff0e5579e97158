"""The guide: CLIP tokenisation, truncation to 77 with the EOS kept, and the two padding modes."""

from __future__ import annotations

import logging

import pytest
import torch

from tg_llava_eval.errors import TGLlavaConfigError, TGLlavaInputError
from tg_llava_eval.processing import build_guide_tokenizer, inference_guide_text, pad_guides, tokenize_guide

LONG_QUESTION = " ".join(["Is the red circle left of the blue square near the top right corner?"] * 40)


def test_real_clip_vocabulary_gives_openai_ids():
    tokenizer = build_guide_tokenizer()
    assert len(tokenizer) == 49408
    assert tokenizer("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (49406, 49407, 49407)
    # Id 0 is "!" without the end-of-word mark (inside a punctuation run such as "x != y"); the
    # official ids != 0 mask hides it. A lone "!" is "!</w>" (256).
    assert tokenizer("x != y", add_special_tokens=False)["input_ids"][1] == 0
    assert tokenizer("!", add_special_tokens=False)["input_ids"] == [256]


def test_truncated_clip_vocabulary_is_a_prefix_of_the_full_one(guide_tokenizer):
    assert len(guide_tokenizer) == 512 + 1000 + 2
    assert guide_tokenizer.bos_token_id == 1512 and guide_tokenizer.eos_token_id == guide_tokenizer.pad_token_id == 1513
    # Words whose merges are among the first 1000 keep their full-vocabulary ids.
    assert guide_tokenizer("a photo of a", add_special_tokens=False)["input_ids"] == [320, 1125, 539, 320]


def test_long_guide_is_cut_to_77_keeping_eos(guide_tokenizer, caplog):
    untruncated = guide_tokenizer(LONG_QUESTION)["input_ids"]
    assert len(untruncated) > 500
    with caplog.at_level(logging.INFO, logger="tg_llava_eval.processing.guide"):
        ids = tokenize_guide(guide_tokenizer, LONG_QUESTION, 77)
    assert len(ids) == 77
    assert ids[:76] == untruncated[:76] and ids[-1] == guide_tokenizer.eos_token_id
    assert "keeping the first 76 and the end-of-text token" in caplog.text
    short = tokenize_guide(guide_tokenizer, "a red circle", 77)
    assert short == guide_tokenizer("a red circle")["input_ids"]


def test_masked_mode_masks_pads_only():
    ids, mask = pad_guides([[5, 6, 7], [5, 0, 8, 9, 7]], pad_token_id=99, mode="masked")
    assert ids.tolist() == [[5, 6, 7, 99, 99], [5, 0, 8, 9, 7]]
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert ids.dtype == mask.dtype == torch.long


def test_official_mode_reproduces_the_ids_not_zero_quirk():
    ids, mask = pad_guides([[5, 6, 7], [5, 0, 8, 9, 7]], pad_token_id=99, mode="official")
    assert ids.tolist() == [[5, 6, 7, 99, 99], [5, 0, 8, 9, 7]]
    # Pads are NOT masked; a real token with id 0 ("!") IS masked.
    assert mask.tolist() == [[1, 1, 1, 1, 1], [1, 0, 1, 1, 1]]


def test_guide_errors():
    with pytest.raises(TGLlavaConfigError, match="guide_padding must be one of"):
        pad_guides([[1, 2]], pad_token_id=0, mode="left")
    with pytest.raises(TGLlavaInputError, match="empty question"):
        inference_guide_text("  <image>\n ", "<image>")
    assert inference_guide_text("<image>\n  Where is the star? ", "<image>") == "Where is the star?"


def test_processor_guide_padding_mode_comes_from_settings(make_processor):
    prompts_and_guides = (["a red circle", "is the blue square at the top left corner of the image"])
    for mode in ("masked", "official"):
        processor = make_processor("qwen_2", guide_padding=mode)
        prompts = [processor.apply_template(g, has_image=False) for g in prompts_and_guides]
        batch = processor(prompts, None, prompts_and_guides, padding_side="left")
        short = len(processor.tokenize_guide(prompts_and_guides[0]))
        expected_pad_mask = 0 if mode == "masked" else 1
        assert (batch["guide_attention_mask"][0, short:] == expected_pad_mask).all()
        assert (batch["guide_input_ids"][0, short:] == processor.guide_tokenizer.pad_token_id).all()
