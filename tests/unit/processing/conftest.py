"""Shared fixtures of the processing tests: locally built tokenizers and small processors.

Tokenizers are built once per session (each takes a fraction of a second; the real Llama-3/Qwen2
vocabularies of ``tests/real_vocabularies.py`` a few seconds, only when a test asks for one);
processors use a small image size (32) except where a test needs the real 336 pipeline (parity with
the official fixture).
"""

from __future__ import annotations

import json

import pytest

from tests.real_vocabularies import real_vocabulary_tokenizer
from tests.shared_files import official_parity_file
from tg_llava_eval.processing import TGLlavaProcessor, build_clip_image_processor, build_guide_tokenizer, build_llm_tokenizer

from .helpers import BUILT, GUIDE_MAX_LENGTH, REAL, SMALL_IMAGE_SIZE, SMALL_NUM_IMAGE_TOKENS


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
def tokenizer_for(llm_tokenizers):
    """``tokenizer_for(template, vocabulary)``: the built (tiny) or real LLM tokenizer of a template.

    ``vocabulary`` is ``helpers.BUILT`` or ``helpers.REAL``; a real vocabulary whose package is not
    installed skips the test (with the package's name).
    """

    def _tokenizer(template: str, vocabulary: str = BUILT):
        if vocabulary == REAL:
            return real_vocabulary_tokenizer(template)
        if vocabulary != BUILT:
            raise ValueError(f"vocabulary must be {BUILT!r} or {REAL!r}, got {vocabulary!r}")
        return llm_tokenizers[template]

    return _tokenizer


@pytest.fixture(scope="session")
def make_processor(tokenizer_for, guide_tokenizer):
    """Factory: a small processor for ``template`` with optional overrides."""

    def _make(
        template="qwen_2",
        *,
        tokenizer_of: str | None = None,
        vocabulary: str = BUILT,
        image_size: int = SMALL_IMAGE_SIZE,
        **overrides,
    ) -> TGLlavaProcessor:
        """``template`` is a name or a template object; ``tokenizer_of`` picks the tokenizer family and
        ``vocabulary`` the built or real tokenizer of it."""
        settings = dict(
            template=template,
            num_image_tokens=SMALL_NUM_IMAGE_TOKENS,
            crop_grid=2,
            guide_max_length=GUIDE_MAX_LENGTH,
        )
        settings.update(overrides)
        return TGLlavaProcessor(
            build_clip_image_processor(image_size), tokenizer_for(tokenizer_of or template, vocabulary), guide_tokenizer, **settings
        )

    return _make
