"""Write the legacy processor fixture: run once with the code of commit b154f65 on the path.

    git archive b154f65 tg_llava_eval | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old python tests/data/legacy_processor/make_fixture.py

It saves the ``tiny`` preset's processor with that commit's ``TGLlavaProcessor.save_pretrained``
(into ``tiny/``) and records that code's encodings of fixed inputs (``tiny_encodings.json``);
``tests/unit/processing/test_legacy_processor.py`` loads the folder with today's code and checks
the encodings are identical. Do not rerun it with newer code: the point is the old writer.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent

QUESTIONS = ["What colour is the circle?", "How many squares are there in the top left corner?", "Is it red?"]
CONTINUATIONS = ["red", "There are two squares.", "yes"]
CONVERSATIONS = [
    [{"from": "human", "value": "What is it?\n<image>"}, {"from": "gpt", "value": "A red star."}],
    [{"from": "human", "value": "Count the shapes."}, {"from": "gpt", "value": "three"},
     {"from": "human", "value": "And the colour?"}, {"from": "gpt", "value": "blue"}],
]


def fixture_images() -> list:
    """Deterministic inputs: a wide gradient, none (text-only), a tall two-colour image."""
    ramp = np.arange(48 * 80 * 3, dtype=np.uint32).reshape(48, 80, 3) % 251
    tall = np.zeros((70, 30, 3), dtype=np.uint8)
    tall[:35] = (10, 200, 30)
    tall[35:] = (250, 5, 120)
    return [Image.fromarray(ramp.astype(np.uint8)), None, Image.fromarray(tall)]


def describe(batch) -> dict:
    """Integer tensors as lists; float tensors as shape + sha256 of their float32 bytes."""
    out = {}
    for key, value in sorted(batch.items()):
        if value.is_floating_point():
            out[key] = {"shape": list(value.shape),
                        "sha256": hashlib.sha256(value.contiguous().float().numpy().tobytes()).hexdigest()}
        else:
            out[key] = value.tolist()
    return out


def encodings(processor) -> dict:
    images = fixture_images()
    prompts = [processor.apply_template(q, has_image=i is not None) for q, i in zip(QUESTIONS, images)]
    guides = [processor.inference_guide_text(q) for q in QUESTIONS]
    samples = [processor.tokenize_training_sample(c, i == 0, max_length=200) for i, c in enumerate(CONVERSATIONS)]
    return {
        "prompts": prompts,
        "generation": describe(processor(prompts, images, guides, padding_side="left")),
        "scoring": describe(processor(prompts, images, guides, padding_side="right", continuations=CONTINUATIONS)),
        "training_samples": [
            {"input_ids": s.input_ids, "labels": s.labels, "guide_text": s.guide_text,
             "guide_input_ids": s.guide_input_ids, "has_image": s.has_image} for s in samples
        ],
        "training_batch": describe(processor.collate_training(samples, [processor.preprocess_image(images[0]), None])),
        "stop_token_ids": processor.stop_token_ids,
        "pad_token_id": processor.pad_token_id,
        "image_token_id": processor.image_token_id,
    }


def main() -> None:
    from tg_llava_eval.checkpoints.creating import build_tokenizers, config_for_tokenizers
    from tg_llava_eval.processing import TGLlavaProcessor
    from tg_llava_eval.variants import get_variant

    variant = get_variant("tiny")
    tokenizer, guide_tokenizer = build_tokenizers(variant)
    config = config_for_tokenizers(variant, tokenizer, guide_tokenizer)
    processor = TGLlavaProcessor.from_config(config, tokenizer, guide_tokenizer)
    target = HERE / "tiny"
    shutil.rmtree(target, ignore_errors=True)
    processor.save_pretrained(target)
    record = encodings(processor)
    (HERE / "tiny_encodings.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
