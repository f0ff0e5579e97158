"""The batch assembler: ``encode_sample`` (one sample) and ``pad_batch`` (many), its rules and errors."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from tg_llava_eval.errors import TGLlavaInputError
from tg_llava_eval.processing import TGLlavaProcessor, encode_sample, pad_batch, pad_sequences

from .helpers import IGNORE

PAD, GUIDE_PAD = 0, 9


def _samples():
    first = encode_sample([5, 6, 7], [1, 2, 3, 4], labels=[IGNORE, 6, 7])
    second = encode_sample([8], [1, 2], labels=[8])
    first["extra"] = torch.ones(2, dtype=torch.float16)
    second["extra"] = torch.full((2,), 3.0, dtype=torch.float16)
    return [first, second]


def test_encode_sample_gives_unbatched_tensors(make_processor):
    processor = make_processor("qwen_2")
    image = processor.preprocess_image(Image.new("RGB", (12, 20), (0, 128, 255)))
    sample = encode_sample([3, 4], [1, 2, 5], labels=[IGNORE, 4], image=image)
    assert list(sample) == ["input_ids", "guide_input_ids", "labels", "pixel_values", "crop_pixel_values"]
    assert sample["input_ids"].dtype == torch.long and sample["input_ids"].tolist() == [3, 4]
    assert sample["pixel_values"] is image.pixel_values and sample["crop_pixel_values"] is image.crop_pixel_values
    assert list(encode_sample([3], [1, 2])) == ["input_ids", "guide_input_ids"]
    with pytest.raises(TGLlavaInputError, match="1 labels for 2 input ids"):
        encode_sample([3, 4], [1, 2], labels=[4])


@pytest.mark.parametrize("side", ["left", "right"])
def test_pad_batch_pads_each_key_by_its_rule(side):
    batch = pad_batch(_samples(), padding_side=side, pad_token_id=PAD, guide_pad_token_id=GUIDE_PAD,
                      guide_padding="masked", position_ids=True)
    assert list(batch) == ["input_ids", "attention_mask", "labels", "extra", "guide_input_ids",
                           "guide_attention_mask", "position_ids"]
    if side == "left":
        assert batch["input_ids"].tolist() == [[5, 6, 7], [PAD, PAD, 8]]
        assert batch["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
        assert batch["labels"].tolist() == [[IGNORE, 6, 7], [IGNORE, IGNORE, 8]]
        assert batch["position_ids"].tolist() == [[0, 1, 2], [0, 0, 0]]
    else:
        assert batch["input_ids"].tolist() == [[5, 6, 7], [8, PAD, PAD]]
        assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
        assert batch["labels"].tolist() == [[IGNORE, 6, 7], [8, IGNORE, IGNORE]]
        assert batch["position_ids"].tolist() == [[0, 1, 2], [0, 0, 0]]
    # Guides: always on the right, whatever the LLM side; other tensors stacked with their dtype.
    assert batch["guide_input_ids"].tolist() == [[1, 2, 3, 4], [1, 2, GUIDE_PAD, GUIDE_PAD]]
    assert batch["guide_attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch["extra"].dtype == torch.float16 and batch["extra"].tolist() == [[1, 1], [3, 3]]


def test_pad_batch_rejects_bad_batches():
    common = dict(pad_token_id=PAD, guide_pad_token_id=GUIDE_PAD, guide_padding="masked")
    first, second = _samples()
    del second["extra"]
    with pytest.raises(TGLlavaInputError, match="sample 1 has keys"):
        pad_batch([first, second], padding_side="left", **common)
    with pytest.raises(TGLlavaInputError, match="no samples"):
        pad_batch([], padding_side="left", **common)
    with pytest.raises(TGLlavaInputError, match="padding_side must be one of"):
        pad_batch(_samples(), padding_side="middle", **common)
    with pytest.raises(TGLlavaInputError, match="samples lack \\['guide_input_ids'\\]"):
        pad_batch([{"input_ids": torch.tensor([1])}], padding_side="left", **common)
    with pytest.raises(TGLlavaInputError, match="padding side must be one of"):
        pad_sequences([[1]], 0, "up")


def test_collate_training_is_encode_sample_then_pad_batch(make_processor):
    processor = make_processor("vicuna_v1")
    conversations = [
        [{"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "A red star."}],
        [{"from": "human", "value": "Count to two."}, {"from": "gpt", "value": "one two"}],
    ]
    samples = [processor.tokenize_training_sample(c, i == 0) for i, c in enumerate(conversations)]
    image = processor.preprocess_image(Image.new("RGB", (30, 10), (250, 10, 10)))
    batch = processor.collate_training(samples, [image, None])
    encoded = [
        encode_sample(s.input_ids, s.guide_input_ids, labels=s.labels, image=t)
        for s, t in zip(samples, [image, processor.image_preprocessor.zeros()])
    ]
    expected = processor.pad_batch(encoded, padding_side="right")
    assert list(batch) == list(expected)
    for key in batch:
        assert torch.equal(batch[key], expected[key]), key


def test_the_mixin_checks_the_sub_processor_types(make_processor, llm_tokenizers):
    processor = make_processor("qwen_2")
    with pytest.raises(TypeError, match="Received a str for argument tokenizer"):
        TGLlavaProcessor(processor.image_processor, llm_tokenizers["qwen_2"], "not a tokenizer", template="qwen_2",
                         num_image_tokens=3, crop_grid=2, guide_max_length=77)
