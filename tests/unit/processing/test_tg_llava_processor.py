"""TGLlavaProcessor end to end: batch tensors, left padding, input errors, save/load, from_config."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from tg_llava_eval.errors import TGLlavaCheckpointError, TGLlavaConfigError, TGLlavaInputError
from tg_llava_eval.processing import TGLlavaProcessor, build_clip_image_processor

from .helpers import BUILT, GUIDE_MAX_LENGTH, IGNORE, REAL, SMALL_NUM_IMAGE_TOKENS, with_vocabularies

QUESTIONS = ["What colour is the circle?", "How many squares are there in the top left corner of the image?", "Is it red?"]


def _images():
    return [Image.new("RGB", (40, 24), (255, 0, 0)), None, Image.new("RGB", (10, 30), (0, 0, 255))]


def _batch_inputs(processor):
    images = _images()
    prompts = [processor.apply_template(q, has_image=img is not None) for q, img in zip(QUESTIONS, images)]
    guides = [processor.inference_guide_text(q) for q in QUESTIONS]
    return prompts, images, guides


def test_build_inputs_expands_the_image_token(make_processor):
    processor = make_processor("vicuna_v1")
    batch = processor.build_inputs("<image>\nWhat colour is the circle?", Image.new("RGB", (20, 20)))
    assert set(batch) == {"input_ids", "attention_mask", "pixel_values", "crop_pixel_values", "guide_input_ids", "guide_attention_mask"}
    ids = batch["input_ids"][0].tolist()
    assert ids.count(processor.image_token_id) == SMALL_NUM_IMAGE_TOKENS
    first = ids.index(processor.image_token_id)
    assert ids[first : first + SMALL_NUM_IMAGE_TOKENS] == [processor.image_token_id] * SMALL_NUM_IMAGE_TOKENS
    assert processor.decode(ids).endswith("What colour is the circle? ASSISTANT:")
    assert processor.guide_tokenizer.decode(batch["guide_input_ids"][0], skip_special_tokens=True) == "what colour is the circle ?"


@pytest.mark.parametrize(("template", "vocabulary"), with_vocabularies(["qwen_2", "llama_3", "vicuna_v1"]))
def test_left_padded_batch_equals_single_samples(template, vocabulary, make_processor):
    processor = make_processor(template, vocabulary=vocabulary)
    prompts, images, guides = _batch_inputs(processor)
    batch = processor(prompts, images, guides, padding_side="left")
    length = batch["input_ids"].shape[1]
    for row, (prompt, image, guide) in enumerate(zip(prompts, images, guides)):
        single = processor([prompt], [image], [guide])
        n = single["input_ids"].shape[1]
        assert torch.equal(batch["input_ids"][row, length - n :], single["input_ids"][0])
        assert (batch["input_ids"][row, : length - n] == processor.pad_token_id).all()
        assert batch["attention_mask"][row].tolist() == [0] * (length - n) + [1] * n
        assert torch.equal(batch["pixel_values"][row], single["pixel_values"][0])
        assert torch.equal(batch["crop_pixel_values"][row], single["crop_pixel_values"][0])
        # Guides are right-padded and masked: the real part is identical to the single sample's.
        g = single["guide_input_ids"].shape[1]
        assert torch.equal(batch["guide_input_ids"][row, :g], single["guide_input_ids"][0])
        assert batch["guide_attention_mask"][row].tolist() == [1] * g + [0] * (batch["guide_input_ids"].shape[1] - g)
    assert not batch["pixel_values"][1].any()  # the text-only sample
    right = processor(prompts, images, guides, padding_side="right")
    lengths = right["attention_mask"].sum(dim=1).tolist()
    assert min(lengths) < length
    for row, n in enumerate(lengths):
        assert right["attention_mask"][row].tolist() == [1] * n + [0] * (length - n)
        assert torch.equal(right["input_ids"][row, :n], batch["input_ids"][row, length - n :])


def test_marker_and_image_mismatches_name_the_prompt(make_processor):
    processor = make_processor("qwen_2")
    good = processor.apply_template("Q?", has_image=True)
    image = Image.new("RGB", (8, 8))
    two_markers = good.replace("<image>", "<image><image>")
    with pytest.raises(TGLlavaInputError, match="sample 1: the prompt has 2 '<image>' marker"):
        processor([good, two_markers], [image, image], ["Q?", "Q?"])
    with pytest.raises(TGLlavaInputError, match="sample 0: the prompt has 1 '<image>' marker\\(s\\) and no image"):
        processor([good], [None], ["Q?"])
    no_marker = processor.apply_template("Q?", has_image=False)
    with pytest.raises(TGLlavaInputError, match="sample 0: the prompt has 0 '<image>' marker\\(s\\) and 1 image"):
        processor([no_marker], [image], ["Q?"])
    with pytest.raises(TGLlavaInputError, match="2 '<image>' markers; TG-LLaVA takes exactly one image"):
        processor.apply_template("<image> and <image>", has_image=True)
    with pytest.raises(TGLlavaInputError, match="marker\\(s\\) but no image was given"):
        processor.apply_template("<image> what?", has_image=False)
    with pytest.raises(TGLlavaInputError, match="images has 1 entries but there are 2 prompts"):
        processor([good, good], [image], ["Q?", "Q?"])


def test_empty_question_is_a_clear_error(make_processor):
    processor = make_processor("qwen_2")
    for question in ("", "   ", "<image>", " <image>\n "):
        with pytest.raises(TGLlavaInputError, match="empty question"):
            processor.apply_template(question, has_image=True)
        with pytest.raises(TGLlavaInputError, match="empty question"):
            processor.build_inputs(question, Image.new("RGB", (4, 4)))
    prompt = processor.apply_template("Q?", has_image=False)
    with pytest.raises(TGLlavaInputError, match="sample 0: empty guide text"):
        processor([prompt], None, ["  "])


def test_500_token_question(make_processor, caplog):
    processor = make_processor("qwen_2")
    question = " ".join(["the red circle is left of the blue square"] * 60)
    with caplog.at_level(logging.INFO, logger="tg_llava_eval.processing"):
        batch = processor.build_inputs(question, Image.new("RGB", (16, 16)))
    guide = batch["guide_input_ids"][0].tolist()
    assert len(guide) == GUIDE_MAX_LENGTH
    assert guide[0] == processor.guide_tokenizer.bos_token_id and guide[-1] == processor.guide_tokenizer.eos_token_id
    assert batch["guide_attention_mask"].all()
    # The LLM side keeps the whole question (no truncation at inference).
    ids = batch["input_ids"][0].tolist()
    assert len(ids) > 500 and batch["attention_mask"].all()
    assert question in processor.decode(ids)
    assert "keeping the first 76" in caplog.text


@pytest.mark.parametrize(("template", "vocabulary"), with_vocabularies(["qwen_2", "llama_3"]))
def test_continuation_labels_cover_only_the_continuation(template, vocabulary, make_processor):
    processor = make_processor(template, vocabulary=vocabulary)
    prompt = processor.apply_template("What colour is the circle?", has_image=True)
    batch = processor([prompt, prompt], [Image.new("RGB", (8, 8))] * 2, ["What colour is the circle?"] * 2,
                      padding_side="right", continuations=["red", "The circle is dark blue."])
    for row, continuation in enumerate(["red", "The circle is dark blue."]):
        labels = batch["labels"][row]
        supervised = batch["input_ids"][row][labels != IGNORE]
        assert processor.decode(supervised) == continuation
        assert torch.equal(labels[labels != IGNORE], supervised)


def test_save_and_load_round_trip(tmp_path, make_processor):
    processor = make_processor("llama_3", guide_padding="official", crop_source="original", crop_grid=3)
    processor.save_pretrained(tmp_path)
    assert (tmp_path / "guide_tokenizer" / "tokenizer.json").is_file()
    assert (tmp_path / "tokenizer.json").is_file() and (tmp_path / "preprocessor_config.json").is_file()
    settings = json.loads((tmp_path / "processor_config.json").read_text())
    assert settings["template"] == "llama_3" and settings["crop_grid"] == 3
    reloaded = TGLlavaProcessor.from_pretrained(tmp_path)
    assert type(reloaded.image_processor) is type(processor.image_processor)
    assert reloaded.to_dict() == processor.to_dict()
    prompts, images, guides = _batch_inputs(processor)
    before, after = processor(prompts, images, guides), reloaded(prompts, images, guides)
    assert set(before) == set(after)
    for key in before:
        assert torch.equal(before[key], after[key]), key
    conversation = [{"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "A star."}]
    assert processor.tokenize_training_sample(conversation, True) == reloaded.tokenize_training_sample(conversation, True)
    assert reloaded.stop_token_ids == processor.stop_token_ids


def test_from_pretrained_rejects_bad_settings(tmp_path, make_processor):
    make_processor("qwen_2").save_pretrained(tmp_path)
    settings = json.loads((tmp_path / "processor_config.json").read_text())
    settings["crop_size"] = 3
    (tmp_path / "processor_config.json").write_text(json.dumps(settings))
    with pytest.raises(TGLlavaCheckpointError, match="unknown \\['crop_size'\\]"):
        TGLlavaProcessor.from_pretrained(tmp_path)
    with pytest.raises(TGLlavaCheckpointError, match="no processor_config.json"):
        TGLlavaProcessor.from_pretrained(tmp_path / "elsewhere")


def _config(**overrides):
    values = dict(
        template="qwen_2", num_image_tokens=7, image_token="<image>", crop_grid=2, crop_source="upsampled",
        guide_max_length=GUIDE_MAX_LENGTH, guide_padding="masked", image_size=16, image_token_id=None,
    )
    values.update(overrides)
    return SimpleNamespace(**values)


def test_from_config_reads_the_contract_fields(llm_tokenizers, guide_tokenizer):
    tokenizer = llm_tokenizers["qwen_2"]
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    processor = TGLlavaProcessor.from_config(_config(image_token_id=image_token_id), tokenizer, guide_tokenizer)
    assert (processor.num_image_tokens, processor.image_size, processor.template.name) == (7, 16, "qwen_2")
    with pytest.raises(TGLlavaConfigError, match=f"config.image_token_id=3 but the tokenizer encodes '<image>' as {image_token_id}"):
        TGLlavaProcessor.from_config(_config(image_token_id=3), tokenizer, guide_tokenizer)
    config = _config()
    del config.guide_padding
    with pytest.raises(TGLlavaConfigError, match="config lacks the processor fields \\['guide_padding'\\]"):
        TGLlavaProcessor.from_config(config, tokenizer, guide_tokenizer)


def test_constructor_rejects_inconsistent_settings(llm_tokenizers, guide_tokenizer):
    common = dict(num_image_tokens=4, crop_grid=2, guide_max_length=GUIDE_MAX_LENGTH)
    image_processor = build_clip_image_processor(16)
    with pytest.raises(TGLlavaConfigError, match="image_token '<img>' must be a single special token"):
        TGLlavaProcessor(image_processor, llm_tokenizers["qwen_2"], guide_tokenizer, template="qwen_2", image_token="<img>", **common)
    with pytest.raises(TGLlavaConfigError, match="guide_padding must be one of"):
        TGLlavaProcessor(image_processor, llm_tokenizers["qwen_2"], guide_tokenizer, template="qwen_2", guide_padding="none", **common)
    with pytest.raises(TGLlavaConfigError, match="unknown conversation template"):
        TGLlavaProcessor(image_processor, llm_tokenizers["qwen_2"], guide_tokenizer, template="qwen2", **common)


@pytest.mark.parametrize(
    ("template", "vocabulary", "stop_tokens"),
    [
        ("qwen_2", BUILT, ["<|im_end|>"]),
        ("llama_3", BUILT, ["<|eot_id|>"]),
        ("vicuna_v1", BUILT, ["</s>"]),
        pytest.param("qwen_2", REAL, ["<|im_end|>"], marks=pytest.mark.slow),
        pytest.param("llama_3", REAL, ["<|eot_id|>"], marks=pytest.mark.slow),
    ],
)
def test_stop_tokens(template, vocabulary, stop_tokens, make_processor):
    processor = make_processor(template, vocabulary=vocabulary)
    assert processor.tokenizer.convert_ids_to_tokens(processor.stop_token_ids) == stop_tokens


def test_with_template_and_pad_input_ids(make_processor):
    processor = make_processor("vicuna_v1")
    plain = processor.with_template("plain")
    assert (plain.template.name, processor.template.name) == ("plain", "vicuna_v1")
    assert plain.apply_template("Q?", has_image=True) == "<image>\nQ?\n"
    pad = processor.pad_token_id
    ids, mask = processor.pad_input_ids([[5, 6], [7]], "left")
    assert ids.tolist() == [[5, 6], [pad, 7]] and mask.tolist() == [[1, 1], [0, 1]]
    ids, mask = processor.pad_input_ids([[5, 6], [7]], "right")
    assert ids.tolist() == [[5, 6], [7, pad]] and mask.tolist() == [[1, 1], [1, 0]]
    with pytest.raises(TGLlavaInputError, match="padding side must be one of"):
        processor.pad_input_ids([[1]], "middle")
