"""Switching a processor's template is refused when the tokenizer belongs to another LLM family."""

from __future__ import annotations

import pytest

from tg_llava_eval.errors import TGLlavaConfigError
from tg_llava_eval.processing import TGLlavaProcessor


def test_with_template_checks_the_tokenizer(tiny_checkpoint):
    processor = TGLlavaProcessor.from_pretrained(tiny_checkpoint)  # qwen_2 family tokenizer
    assert processor.with_template("plain").template.name == "plain"
    assert processor.template.name == "qwen_2_bare"  # the original is unchanged
    with pytest.raises(TGLlavaConfigError, match=r"'<\|eot_id\|>'.*another LLM family"):
        processor.with_template("llama_3")
