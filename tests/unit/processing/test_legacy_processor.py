"""Processor folders written before ``TGLlavaProcessor`` became a ``ProcessorMixin`` still load.

``tests/data/legacy_processor/tiny`` is the ``tiny`` preset's processor saved by the code of
commit b154f65 (the plain-class processor), and ``tiny_encodings.json`` holds that code's
encodings of fixed inputs; ``make_fixture.py`` beside them wrote both. Today's code must load the
folder (directly and through ``AutoProcessor``), give identical encodings, and write it back with
the same files.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoProcessor, ProcessorMixin

from tg_llava_eval.processing import TGLlavaProcessor

LEGACY = Path(__file__).resolve().parents[2] / "data" / "legacy_processor"


def _fixture_module():
    spec = importlib.util.spec_from_file_location("legacy_make_fixture", LEGACY / "make_fixture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def recorded() -> dict:
    return json.loads((LEGACY / "tiny_encodings.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("loader", [TGLlavaProcessor.from_pretrained, AutoProcessor.from_pretrained])
def test_legacy_folder_gives_the_recorded_encodings(loader, recorded):
    processor = loader(LEGACY / "tiny")
    assert type(processor) is TGLlavaProcessor and isinstance(processor, ProcessorMixin)
    assert _fixture_module().encodings(processor) == recorded


def test_saving_again_keeps_the_layout(tmp_path):
    processor = TGLlavaProcessor.from_pretrained(LEGACY / "tiny")
    processor.save_pretrained(tmp_path)
    old = sorted(p.relative_to(LEGACY / "tiny").as_posix() for p in (LEGACY / "tiny").rglob("*") if p.is_file())
    new = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert new == old
    for name in ("processor_config.json", "preprocessor_config.json", "tokenizer.json", "guide_tokenizer/tokenizer.json"):
        assert (tmp_path / name).read_bytes() == (LEGACY / "tiny" / name).read_bytes(), name
    # The mixin records the processor class in each tokenizer's config; nothing else changes.
    # (transformers adds is_local/local_files_only to a tokenizer loaded from a folder; the
    # plain-class processor's re-save wrote them too.)
    for name in ("tokenizer_config.json", "guide_tokenizer/tokenizer_config.json"):
        written = json.loads((tmp_path / name).read_text())
        assert written.pop("processor_class") == "TGLlavaProcessor"
        for key in ("is_local", "local_files_only"):
            written.pop(key, None)
        assert written == json.loads((LEGACY / "tiny" / name).read_text()), name
    reloaded = AutoProcessor.from_pretrained(tmp_path)
    assert reloaded.to_dict() == processor.to_dict()


def test_auto_processor_loads_a_checkpoint_folder(tiny_checkpoint):
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING

    from tg_llava_eval.modeling import TGLlavaConfig

    # Registered the way external models are: by config class (model_type "tg_llava").
    assert PROCESSOR_MAPPING[TGLlavaConfig] is TGLlavaProcessor
    processor = AutoProcessor.from_pretrained(tiny_checkpoint)
    assert type(processor) is TGLlavaProcessor
    assert processor.to_dict() == TGLlavaProcessor.from_pretrained(tiny_checkpoint).to_dict()


def test_batch_equals_pad_batch_of_encoded_samples(recorded):
    processor = TGLlavaProcessor.from_pretrained(LEGACY / "tiny")
    fixture = _fixture_module()
    images = fixture.fixture_images()
    prompts = recorded["prompts"]
    guides = [processor.inference_guide_text(q) for q in fixture.QUESTIONS]
    batch = processor(prompts, images, guides, padding_side="right", continuations=fixture.CONTINUATIONS)
    samples = [processor.encode_prompt(p, i, g, continuation=c) for p, i, g, c in
               zip(prompts, images, guides, fixture.CONTINUATIONS)]
    padded = processor.pad_batch(samples, padding_side="right")
    assert list(padded) == list(batch)
    for key in batch:
        assert torch.equal(batch[key], padded[key]), key
