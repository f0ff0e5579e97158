"""Constants and small helpers shared by the processing tests (imported by the test modules).

The official parity fixtures are found by ``tests/shared_files.py`` (carried in ``tests/data`` or
read from ``shared/``).
"""

from __future__ import annotations

import zlib

import pytest

from tests.real_vocabularies import REAL_VOCABULARY_TEMPLATES
from tg_llava_eval.conversation import TEMPLATES

#: The official templates (the golden prompts cover exactly these; qwen_2_bare is ours).
TEMPLATE_NAMES = tuple(name for name in TEMPLATES if name != "qwen_2_bare")
#: Small sizes for fast tests (the real model: 336 px, 576 + 64 image tokens).
SMALL_IMAGE_SIZE = 32
SMALL_NUM_IMAGE_TOKENS = 5
GUIDE_MAX_LENGTH = 77
IGNORE = -100

#: The tokenizer a template test runs on: the locally built tiny one (``build_llm_tokenizer``) or
#: the model's real vocabulary (``tests/real_vocabularies.py``), where a package ships it.
BUILT, REAL = "built", "real"


def with_vocabularies(templates) -> list:
    """``(template, vocabulary)`` cases: every template on its built tokenizer, and on its real one
    where there is one (``llama_3``, ``qwen_2``; Vicuna's SentencePiece model ships nowhere).

    The real cases are marked ``slow``: building a 150 000-rank vocabulary takes a few seconds
    (once per session), which ``make test-quick`` leaves to ``make test``.
    """
    cases = []
    for template in templates:
        cases.append(pytest.param(template, BUILT, id=f"{template}-{BUILT}"))
        if template in REAL_VOCABULARY_TEMPLATES:
            cases.append(pytest.param(template, REAL, id=f"{template}-{REAL}", marks=pytest.mark.slow))
    return cases


def supervised_runs(input_ids, labels) -> list[list[int]]:
    """Maximal runs of supervised tokens (label != -100); labels must equal the ids there."""
    runs, current = [], []
    for token, label in zip(input_ids, labels):
        if label != IGNORE:
            assert label == token
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return runs


def png_with_declared_size(width: int, height: int) -> bytes:
    """A 1x1 PNG whose IHDR claims ``width x height`` (valid CRC): a decompression-bomb header."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    # PNG: 8-byte signature, then IHDR = length(4) type(4) width(4) height(4) ... crc(4).
    data[16:20] = width.to_bytes(4, "big")
    data[20:24] = height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)
