"""Training data: collator output (golden label masks per template), bad rows, grouped sampling."""

from __future__ import annotations

import json
import pathlib

import pytest
import torch
from PIL import Image

from tg_llava_eval.processing import IGNORE_INDEX, TGLlavaProcessor, build_clip_image_processor, build_guide_tokenizer, build_llm_tokenizer
from tg_llava_eval.training.data import (
    BadRowError,
    LazySupervisedDataset,
    ModalityLengthGroupedSampler,
    SkipReport,
    TrainingCollator,
    modality_length_grouped_indices,
)
from tg_llava_eval.variants import TINY_GUIDE_MERGES

NUM_IMAGE_TOKENS = 24
IMAGE_SIZE = 56

CAPTION = [{"from": "human", "value": "<image>\nDescribe the image concisely."},
           {"from": "gpt", "value": "A red circle in the top-left."}]
TWO_TURNS = [{"from": "human", "value": "What colour is the shape in the top-left?\n<image>"},
             {"from": "gpt", "value": "red"},
             {"from": "human", "value": "Which shape is in the bottom-right?"},
             {"from": "gpt", "value": "star"}]
TEXT_ONLY = [{"from": "human", "value": "How many sides does a square have?"}, {"from": "gpt", "value": "4"}]

#: What the labels supervise, per template: each answer and the separator that ends it
#: (reference tg_llava_architecture.md §5); ``plain`` keeps only the caption and its newline.
GOLDEN_SPANS = {
    "plain": {"caption": ["A red circle in the top-left.\n"]},
    "vicuna_v1": {"caption": ["A red circle in the top-left.</s>"], "two_turns": ["red</s>", "star</s>"],
                  "text_only": ["4</s>"]},
    "llama_3": {"caption": ["A red circle in the top-left.<|eot_id|>"],
                "two_turns": ["red<|eot_id|>", "star<|eot_id|>"], "text_only": ["4<|eot_id|>"]},
    "qwen_2": {"caption": ["A red circle in the top-left.<|im_end|>"],
               "two_turns": ["red<|im_end|>", "star<|im_end|>"], "text_only": ["4<|im_end|>"]},
}


@pytest.fixture(scope="module")
def guide_tokenizer():
    return build_guide_tokenizer(TINY_GUIDE_MERGES)


def _processor(template: str, guide_tokenizer) -> TGLlavaProcessor:
    return TGLlavaProcessor(build_clip_image_processor(IMAGE_SIZE), build_llm_tokenizer(template), guide_tokenizer,
                            template=template, num_image_tokens=NUM_IMAGE_TOKENS, crop_grid=2, guide_max_length=77)


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> pathlib.Path:
    folder = tmp_path_factory.mktemp("images")
    Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (220, 30, 30)).save(folder / "red.png")
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    return folder


def _write(tmp_path: pathlib.Path, rows: list) -> pathlib.Path:
    path = tmp_path / "data.json"
    path.write_text(json.dumps(rows))
    return path


def _spans(tokenizer, labels: torch.Tensor) -> list[str]:
    """Decode each run of supervised positions."""
    spans, current = [], []
    for label in labels.tolist() + [IGNORE_INDEX]:
        if label == IGNORE_INDEX:
            if current:
                spans.append(tokenizer.decode(current, skip_special_tokens=False))
            current = []
        else:
            current.append(label)
    return spans


@pytest.mark.parametrize("template", sorted(GOLDEN_SPANS))
def test_collator_labels_match_golden_masks(template, guide_tokenizer, image_dir, tmp_path):
    processor = _processor(template, guide_tokenizer)
    samples = {"caption": {"id": "c", "image": "red.png", "conversations": CAPTION}}
    if template != "plain":  # `plain` takes exactly one caption exchange
        samples["two_turns"] = {"id": "t", "image": "red.png", "conversations": TWO_TURNS}
        samples["text_only"] = {"id": "x", "conversations": TEXT_ONLY}
    dataset = LazySupervisedDataset(_write(tmp_path, list(samples.values())), image_dir, processor, max_length=512)
    batch = TrainingCollator(processor)([dataset[i] for i in range(len(dataset))])
    B, L = batch["input_ids"].shape
    assert batch["labels"].shape == batch["attention_mask"].shape == (B, L)
    assert batch["pixel_values"].shape == (B, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert batch["crop_pixel_values"].shape == (B, 4, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert batch["skipped_rows"] == ()
    for row, (name, sample) in enumerate(samples.items()):
        labels, ids, mask = batch["labels"][row], batch["input_ids"][row], batch["attention_mask"][row]
        assert _spans(processor.tokenizer, labels) == GOLDEN_SPANS[template][name]
        # The collator adds nothing of its own: the processor's tokens and labels, right-padded.
        expected = processor.tokenize_training_sample(sample["conversations"], "image" in sample, max_length=512)
        n = len(expected.input_ids)
        assert ids[:n].tolist() == expected.input_ids and labels[:n].tolist() == expected.labels
        assert mask.tolist() == [1] * n + [0] * (L - n)
        assert (labels[n:] == IGNORE_INDEX).all() and (ids[n:] == processor.pad_token_id).all()
        image_positions = (ids == processor.image_token_id)
        assert int(image_positions.sum()) == (NUM_IMAGE_TOKENS if "image" in sample else 0)
        assert (labels[image_positions] == IGNORE_INDEX).all()
        has_pixels = bool(batch["pixel_values"][row].abs().sum() > 0)
        assert has_pixels == ("image" in sample)  # text-only rows get the zero image
        # The guide is the last human turn (official), CLIP-tokenised.
        guide_ids = batch["guide_input_ids"][row][batch["guide_attention_mask"][row].bool()].tolist()
        assert guide_ids == expected.guide_input_ids


BAD_ROWS = [
    {"id": "ok-1", "image": "red.png", "conversations": CAPTION},
    "not an object",
    {"id": "no-turns", "image": "red.png", "conversations": []},
    {"id": "robot", "image": "red.png", "conversations": [{"from": "human", "value": "<image>\nQ?"}, {"from": "robot", "value": "x"}]},
    {"id": "lost", "image": "missing.png", "conversations": CAPTION},
    {"id": "broken", "image": "corrupt.png", "conversations": CAPTION},
    {"id": "merge", "image": "red.png", "conversations": [{"from": "human", "value": "<image>\nQ?"}, {"from": "gpt", "value": "\nYes"}]},
    {"id": "two-markers", "image": "red.png", "conversations": [{"from": "human", "value": "<image>\n<image> Q?"}, {"from": "gpt", "value": "x"}]},
    {"id": "ok-2", "conversations": TEXT_ONLY},
]


def test_bad_rows_are_skipped_counted_and_named(guide_tokenizer, image_dir, tmp_path):
    processor = _processor("qwen_2", guide_tokenizer)
    dataset = LazySupervisedDataset(_write(tmp_path, BAD_ROWS), image_dir, processor, max_length=512)
    # Up-front checks: 4 rows gone before training, the rest are lazy.
    assert dataset.report.counts() == {"malformed_row": 1, "empty_conversation": 1, "unknown_role": 1, "missing_image": 1}
    assert [e.row_id for e in dataset.entries] == ["ok-1", "broken", "merge", "two-markers", "ok-2"]
    assert "row 4 (id 'lost')" in dataset.report.examples["missing_image"][0]
    # Item 1 ("broken") fails to decode, 2 and 3 fail tokenisation: item 1 becomes "ok-2".
    item = dataset[1]
    assert [(reason, index) for reason, index, _ in item["skipped"]] == [
        ("corrupt_image", 5), ("label_mismatch", 6), ("bad_conversation", 7)]
    assert item["image"] is None and item["sample"].guide_text == "How many sides does a square have?"
    batch = TrainingCollator(processor)([dataset[0], item])
    report = SkipReport()
    report.merge(dataset.report)
    for reason, index, message in batch["skipped_rows"]:
        report.add(reason, index, message)
    assert report.total == 7 and report.to_dict()["skipped_by_reason"] == {
        "malformed_row": 1, "empty_conversation": 1, "unknown_role": 1, "missing_image": 1,
        "corrupt_image": 1, "label_mismatch": 1, "bad_conversation": 1}
    assert "row 5 (id 'broken')" in report.examples["corrupt_image"][0] and "corrupt.png" in report.examples["corrupt_image"][0]


@pytest.mark.parametrize("rows, message", [
    (BAD_ROWS[:5], r"row 1 \(id None\) of .*data.json: malformed_row"),
    ([BAD_ROWS[0], BAD_ROWS[3]], r"row 1 \(id 'robot'\) of .*: unknown_role: turn 1 has unknown role 'robot'"),
    ([BAD_ROWS[0], BAD_ROWS[4]], r"row 1 \(id 'lost'\) of .*: missing_image: image file not found: .*missing.png"),
])
def test_strict_data_fails_up_front_naming_the_row(rows, message, guide_tokenizer, image_dir, tmp_path):
    with pytest.raises(BadRowError, match=message):
        LazySupervisedDataset(_write(tmp_path, rows), image_dir, _processor("qwen_2", guide_tokenizer), max_length=512, strict=True)


def test_strict_data_fails_lazily_naming_the_row(guide_tokenizer, image_dir, tmp_path):
    dataset = LazySupervisedDataset(_write(tmp_path, [BAD_ROWS[0], BAD_ROWS[6]]), image_dir,
                                    _processor("qwen_2", guide_tokenizer), max_length=512, strict=True)
    dataset[0]
    with pytest.raises(BadRowError, match=r"row 1 \(id 'merge'\) of .*: label_mismatch: label mismatch at the end of segment"):
        dataset[1]


def test_unusable_file_is_an_error(guide_tokenizer, image_dir, tmp_path):
    processor = _processor("qwen_2", guide_tokenizer)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json is not valid UTF-8 JSON"):
        LazySupervisedDataset(tmp_path / "bad.json", image_dir, processor, max_length=512)
    with pytest.raises(ValueError, match=r"none of its 2 rows is usable"):
        LazySupervisedDataset(_write(tmp_path, [BAD_ROWS[1], BAD_ROWS[2]]), image_dir, processor, max_length=512)


def _lengths(n_image: int, n_text: int) -> list[int]:
    generator = torch.Generator().manual_seed(0)
    image = (torch.randint(5, 50, (n_image,), generator=generator)).tolist()
    text = (-torch.randint(5, 50, (n_text,), generator=generator)).tolist()
    return [x for pair in zip(image, text) for x in pair] + image[len(text):] + text[len(image):]


def test_modality_grouped_order_is_a_permutation_of_single_modality_megabatches():
    lengths = _lengths(70, 30)
    batch_size, world = 4, 2
    order = modality_length_grouped_indices(lengths, batch_size, world, torch.Generator().manual_seed(1))
    assert sorted(order) == list(range(100))
    megabatch = batch_size * world
    full = (70 // megabatch - (70 % megabatch == 0)) + (30 // megabatch - (30 % megabatch == 0))
    chunks = [order[i : i + megabatch] for i in range(0, len(order), megabatch)]
    # Every megabatch before the mixed remainder holds one modality only.
    for chunk in chunks[:full]:
        assert len({lengths[i] > 0 for i in chunk}) == 1
    assert any(all(lengths[i] < 0 for i in c) for c in chunks[:full])
    # Within a megabatch, each rank's chunk is sorted longest first (official even chunks).
    first = chunks[0]
    per_rank = [first[r * batch_size:(r + 1) * batch_size] for r in range(world)]
    for part in per_rank:
        assert [abs(lengths[i]) for i in part] == sorted((abs(lengths[i]) for i in part), reverse=True)


def test_grouped_sampler_is_deterministic_per_seed_and_epoch():
    sampler = ModalityLengthGroupedSampler(_lengths(20, 12), batch_size=2, world_size=2, seed=5)
    first = list(sampler)
    assert list(sampler) == first and len(sampler) == 32
    sampler.set_epoch(1)
    assert list(sampler) != first and sorted(sampler) == sorted(first)
    assert list(ModalityLengthGroupedSampler(_lengths(20, 12), batch_size=2, world_size=2, seed=6)) != first
    with pytest.raises(ValueError, match="non-zero"):
        modality_length_grouped_indices([3, 0, -2], 1, 1, torch.Generator())
