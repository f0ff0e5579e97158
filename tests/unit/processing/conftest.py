"""Shared fixtures of the processing tests: locally built tokenizers and small processors.

Tokenizers are built once per session (each takes a fraction of a second); processors use a small
image size (32) except where a test needs the real 336 pipeline (parity with the official fixture).
"""

from __future__ import annotations

import json

import pytest

from tests.shared_files import official_parity_file
from tg_llava_eval.processing import TGLlavaProcessor, build_clip_image_processor, build_guide_tokenizer, build_llm_tokenizer

from .helpers import GUIDE_MAX_LENGTH, SMALL_IMAGE_SIZE, SMALL_NUM_IMAGE_TOKENS


@pytest.fixture(scope="session")
def golden_prompts() -> dict:
    """``prompts_golden.json``: template -> case -> exact string."""
    return json.loads(official_parity_file("prompts_golden.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def guide_tokenizer():
    """Tiny CLIP BPE (first 1000 merges): valid CLIP ids, fast to build."""
    return build_guide_tokenizer(num_merges=1000)


class _TokenizersByTemplate(dict):
    """Template name -> tiny LLM tokenizer, built on first access."""

    def __missing__(self, template: str):
        self[template] = build_llm_tokenizer(template)
        return self[template]


@pytest.fixture(scope="session")
def llm_tokenizers() -> dict:
    """One tiny LLM tokenizer per template (built lazily, shared by the session)."""
    return _TokenizersByTemplate()


@pytest.fixture(scope="session")
def make_processor(llm_tokenizers, guide_tokenizer):
    """Factory: a small processor for ``template`` with optional overrides."""

    def _make(template="qwen_2", *, tokenizer_of: str | None = None, image_size: int = SMALL_IMAGE_SIZE, **overrides) -> TGLlavaProcessor:
        """``template`` is a name or a template object; ``tokenizer_of`` picks the tokenizer family."""
        settings = dict(
            template=template,
            num_image_tokens=SMALL_NUM_IMAGE_TOKENS,
            crop_grid=2,
            guide_max_length=GUIDE_MAX_LENGTH,
        )
        settings.update(overrides)
        return TGLlavaProcessor(
            build_clip_image_processor(image_size), llm_tokenizers[tokenizer_of or template], guide_tokenizer, **settings
        )

    return _make
