"""Training tokenisation: label-mask goldens per template (multi-turn included), verification of
segment boundaries, sample errors, truncation and the training collator.

The label-mask and mismatch-guard tests of ``llama_3`` and ``qwen_2`` run on both the built tiny
tokenizer and the model's real vocabulary (``helpers.with_vocabularies``): BPE merges across a
segment boundary only show with the real merges."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from PIL import Image

from tg_llava_eval.errors import TGLlavaInputError
from tg_llava_eval.processing import LabelMismatchError, get_template

from .helpers import IGNORE, SMALL_NUM_IMAGE_TOKENS, supervised_runs, with_vocabularies

Q1, A1 = "What is in this image?", "A red ball on a wooden table."
Q2, A2 = "What colour is the table?", "It is brown."
ONE_TURN = [{"from": "human", "value": "<image>\n" + Q1}, {"from": "gpt", "value": A1}]
TWO_TURNS = ONE_TURN + [{"from": "human", "value": Q2}, {"from": "gpt", "value": A2}]

#: Expected supervised text per template: each answer with its end separator, nothing else.
EXPECTED_SUPERVISED = {
    "qwen_2": [A1 + "<|im_end|>", A2 + "<|im_end|>"],
    "llama_3": [A1 + "<|eot_id|>", A2 + "<|eot_id|>"],
    "vicuna_v1": [A1 + "</s>", A2 + "</s>"],
}
#: Expected masked text between the answers (the instruction of round 2).
EXPECTED_SECOND_INSTRUCTION = {
    "qwen_2": "<|im_start|>user\n" + Q2 + "<|im_end|><|im_start|>assistant\n",
    "llama_3": "<|start_header_id|>user<|end_header_id|>\n\n" + Q2 + "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    "vicuna_v1": "USER: " + Q2 + " ASSISTANT:",
}


def _masked_runs(input_ids, labels):
    runs, current = [], []
    for token, label in zip(input_ids, labels):
        if label == IGNORE:
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    return runs + ([current] if current else [])


@pytest.mark.parametrize(("template", "vocabulary"), with_vocabularies(["qwen_2", "llama_3", "vicuna_v1"]))
def test_multi_turn_labels_supervise_exactly_the_answers(template, vocabulary, make_processor):
    processor = make_processor(template, vocabulary=vocabulary)
    tokenizer = processor.tokenizer
    sample = processor.tokenize_training_sample(TWO_TURNS, has_image=True)
    assert len(sample.input_ids) == len(sample.labels)
    runs = supervised_runs(sample.input_ids, sample.labels)
    assert [tokenizer.decode(run) for run in runs] == EXPECTED_SUPERVISED[template]
    masked = _masked_runs(sample.input_ids, sample.labels)
    assert len(masked) == 2
    assert tokenizer.decode(masked[1]) == EXPECTED_SECOND_INSTRUCTION[template]
    # The first masked run holds the system text, the whole first question and the image tokens.
    assert masked[0].count(processor.image_token_id) == SMALL_NUM_IMAGE_TOKENS
    assert sample.input_ids.count(processor.image_token_id) == SMALL_NUM_IMAGE_TOKENS
    assert sample.guide_text == Q2


def test_vicuna_answer_starts_with_its_space_token(make_processor):
    # Generation prompts end with "ASSISTANT:", so the first answer token is "▁A" — supervised.
    processor = make_processor("vicuna_v1")
    sample = processor.tokenize_training_sample(ONE_TURN, has_image=True)
    run = supervised_runs(sample.input_ids, sample.labels)[0]
    assert processor.tokenizer.convert_ids_to_tokens(run)[0] == "\u2581A"
    assert sample.input_ids[0] == processor.tokenizer.bos_token_id and sample.labels[0] == IGNORE


@pytest.mark.parametrize(("template", "vocabulary"), with_vocabularies(["llama_3"]))
def test_llama3_double_bos_is_masked(template, vocabulary, make_processor):
    # Meta-style tokenizer BOS + the template's own <|begin_of_text|> (official behaviour).
    processor = make_processor(template, vocabulary=vocabulary)
    sample = processor.tokenize_training_sample(ONE_TURN, has_image=True)
    bos = processor.tokenizer.convert_tokens_to_ids("<|begin_of_text|>")
    assert sample.input_ids[:2] == [bos, bos] and sample.labels[:2] == [IGNORE, IGNORE]


def test_plain_masks_image_and_supervises_caption_and_newline(make_processor):
    processor = make_processor("plain")
    sample = processor.tokenize_training_sample(ONE_TURN, has_image=True)
    tokenizer = processor.tokenizer
    prefix = [tokenizer.bos_token_id] + [processor.image_token_id] * SMALL_NUM_IMAGE_TOKENS
    assert sample.input_ids[: len(prefix)] == prefix
    assert sample.labels[: len(prefix)] == [IGNORE] * len(prefix)
    runs = supervised_runs(sample.input_ids, sample.labels)
    assert [tokenizer.decode(run) for run in runs] == [A1 + "\n"]
    assert len(prefix) + len(runs[0]) == len(sample.input_ids)
    assert sample.guide_text == Q1


@pytest.mark.parametrize(("template", "vocabulary"), with_vocabularies(["qwen_2", "llama_3", "vicuna_v1"]))
def test_text_only_sample_has_no_image_tokens(template, vocabulary, make_processor):
    processor = make_processor(template, vocabulary=vocabulary)
    sample = processor.tokenize_training_sample(
        [{"from": "human", "value": Q2}, {"from": "gpt", "value": A2}], has_image=False
    )
    assert processor.image_token_id not in sample.input_ids
    assert [processor.tokenizer.decode(r) for r in supervised_runs(sample.input_ids, sample.labels)] == EXPECTED_SUPERVISED[template][1:]


@pytest.mark.parametrize(("template", "vocabulary"), with_vocabularies(["qwen_2"]))
def test_boundary_inside_a_token_raises_label_mismatch(template, vocabulary, make_processor):
    # A template whose answer starts in the middle of a word: "...assistant\nTh" + "ere are ...".
    # "There" is one token of the tiny and of the real Qwen2 vocabulary, so the segment boundary
    # splits a token.
    qwen = get_template(template)
    broken = dataclasses.replace(qwen, name="broken", assistant_prefix=qwen.assistant_prefix + "Th")
    sample = [{"from": "human", "value": "<image>\nHow many squares are there?"}, {"from": "gpt", "value": "ere are two squares."}]
    processor = make_processor(broken, tokenizer_of=template, vocabulary=vocabulary)
    assert processor.tokenizer.tokenize("There")[0] == "There"
    with pytest.raises(LabelMismatchError, match="label mismatch at the end of segment 0"):
        processor.tokenize_training_sample(sample, has_image=True)
    assert issubclass(LabelMismatchError, TGLlavaInputError)
    # Control: the registered template splits the same text cleanly.
    clean = [{"from": "human", "value": "<image>\nHow many squares are there?"}, {"from": "gpt", "value": "There are two squares."}]
    runs = supervised_runs(*dataclasses.astuple(make_processor(template, vocabulary=vocabulary).tokenize_training_sample(clean, True))[:2])
    assert processor.tokenizer.decode(runs[0]) == "There are two squares.<|im_end|>"


@pytest.mark.parametrize(
    ("conversation", "has_image", "message"),
    [
        ([], True, "the conversation is empty"),
        ([{"from": "system", "value": "hi"}, {"from": "gpt", "value": "x"}], False, "turn 0 has unknown role 'system'"),
        ([{"from": "human", "value": "<image>\nQ"}, {"from": "bot", "value": "x"}], True, "turn 1 has unknown role 'bot'"),
        ([{"from": "gpt", "value": "x"}, {"from": "human", "value": "<image>\nQ"}], True, "turn 0 has role 'assistant'"),
        ([{"from": "human", "value": "<image>\nQ"}], True, "must end with a 'assistant' turn"),
        ([{"from": "human", "value": "Q"}, {"from": "gpt", "value": "x"}], True, "1 '<image>' marker|0 '<image>' marker"),
        ([{"from": "human", "value": "<image> Q"}, {"from": "gpt", "value": "x"}], False, "1 '<image>' marker"),
        ([{"from": "human", "value": "<image><image> Q"}, {"from": "gpt", "value": "x"}], True, "2 '<image>' marker"),
        ([{"from": "human", "value": " <image> "}, {"from": "gpt", "value": "x"}], True, "empty question in human turn 0"),
        ([{"from": "human", "value": "<image>\nQ"}, {"from": "gpt", "value": 3}], True, "turn 1 must be a dict with a string 'value'"),
    ],
)
def test_bad_samples_raise_naming_the_problem(conversation, has_image, message, make_processor):
    with pytest.raises(TGLlavaInputError, match=message):
        make_processor("qwen_2").tokenize_training_sample(conversation, has_image=has_image)


@pytest.mark.parametrize(("template", "vocabulary"), with_vocabularies(["qwen_2", "llama_3"]))
def test_truncation_after_image_expansion(template, vocabulary, make_processor):
    processor = make_processor(template, vocabulary=vocabulary)
    full = processor.tokenize_training_sample(TWO_TURNS, has_image=True)
    answer_start = next(i for i, label in enumerate(full.labels) if label != IGNORE)
    first_answer_end = next(i for i in range(answer_start, len(full.labels)) if full.labels[i] == IGNORE)
    cut = processor.tokenize_training_sample(TWO_TURNS, has_image=True, max_length=first_answer_end + 2)
    assert cut.input_ids == full.input_ids[: first_answer_end + 2]
    assert cut.labels == full.labels[: first_answer_end + 2]
    image_start = full.input_ids.index(processor.image_token_id)
    with pytest.raises(TGLlavaInputError, match="cuts into the image tokens"):
        processor.tokenize_training_sample(TWO_TURNS, has_image=True, max_length=image_start + 2)
    with pytest.raises(TGLlavaInputError, match="no supervised token left"):
        processor.tokenize_training_sample(TWO_TURNS, has_image=True, max_length=answer_start)


def test_collate_training_pads_right_and_zero_fills_text_only(make_processor):
    processor = make_processor("qwen_2")
    with_image = processor.tokenize_training_sample(TWO_TURNS, has_image=True)
    text_only = processor.tokenize_training_sample([{"from": "human", "value": Q2}, {"from": "gpt", "value": A2}], has_image=False)
    image = processor.preprocess_image(Image.new("RGB", (40, 20), (200, 30, 30)))
    batch = processor.collate_training([with_image, text_only], [image, None])
    size, length = processor.image_size, len(with_image.input_ids)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape == (2, length)
    assert batch["input_ids"][0].tolist() == with_image.input_ids
    short = len(text_only.input_ids)
    assert batch["input_ids"][1, :short].tolist() == text_only.input_ids
    assert (batch["input_ids"][1, short:] == processor.pad_token_id).all()
    assert (batch["labels"][1, short:] == IGNORE).all() and batch["attention_mask"][1].sum() == short
    assert batch["pixel_values"].shape == (2, 3, size, size)
    assert batch["crop_pixel_values"].shape == (2, 4, 3, size, size)
    assert torch.equal(batch["pixel_values"][0], image.pixel_values)
    assert not batch["pixel_values"][1].any() and not batch["crop_pixel_values"][1].any()
    assert batch["guide_input_ids"][0, : len(with_image.guide_input_ids)].tolist() == with_image.guide_input_ids
    with pytest.raises(TGLlavaInputError, match="sample 1: has_image=False"):
        processor.collate_training([with_image, text_only], [image, image])
