"""The text guide: which text steers the vision side (TG-FOM and TG-DP) and how it is tokenised.

Which text (reference ``tg_llava_architecture.md`` §6, golden strings ``*_text_guide`` in
``prompts_golden.json``):

* training — the **last human turn** of the raw sample (the official loop overwrites the guide for
  every human turn), before any template processing, with ``<image>`` deleted and outer whitespace
  stripped; inner whitespace is kept. In multi-turn data this is the final question, not the one
  carrying the image (an official quirk, reproduced);
* inference — the user's question with the markers deleted and stripped (the official runner).

Tokenisation: the guide tower's CLIP tokenizer with its specials (``<|startoftext|> ... <|endoftext|>``).
A guide longer than the tower's positions (``guide_max_length``, 77) is cut to
``guide_max_length - 1`` tokens plus the EOS, with a logged note. The official code instead cuts
after padding in training (losing the EOS) and not at all in its runner (overflowing CLIP's
positions); keeping the EOS keeps CLIP's EOS pooling meaningful.

SigLIP guide tower (beyond the official code): SigLIP's SentencePiece tokenizer appends ``</s>``
(id 1, also its pad); a guide longer than its 64 positions is cut the same way, keeping ``</s>``.

Padding length (``TGLlavaConfig.guide_pad_to_max_length``, from the guide tower's family):

* CLIP: right-padded to the longest guide of the batch (the official collator);
* SigLIP: always right-padded to ``guide_max_length`` (64), ``padding="max_length"`` as SigLIP's
  text tower was trained: its ``pooler_output`` is read at the *last* position, which must then be
  a pad, whatever the batch. Padding a SigLIP guide like CLIP's would move the pooled position onto
  a real token and change TG-FOM's input with the batch.

Padding (right, with the tokenizer's pad token: CLIP 49407 for the real vocabulary, SigLIP 1) and
the mask, selected by ``guide_padding`` (``TGLlavaConfig.guide_padding``):

* ``"masked"`` (default): ``guide_attention_mask`` is 1 on real tokens, 0 on pads. A sample's
  guide then does not depend on the other guides of its batch, so batch size cannot change answers;
* ``"official"``: the official quirk, ``mask = ids != 0``. Pads are *not* masked (they reach the
  TG-DP perceiver) and a real token with id 0 (``!`` in CLIP's vocabulary) *is* masked.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from ..conversation import strip_image_markers
from ..errors import TGLlavaConfigError, TGLlavaInputError
from ..modeling.configuration_tg_llava import GUIDE_PADDING_MODES  # allowed values of guide_padding

logger = logging.getLogger(__name__)

#: In ``"official"`` mode the mask is ``ids != OFFICIAL_MASKED_ID`` (the official ``ids.ne(0)``).
OFFICIAL_MASKED_ID = 0


def training_guide_text(conversations: Sequence[dict], image_token: str) -> str:
    """The official training guide: the last human turn, markers deleted, outer whitespace stripped.

    Args:
        conversations: Raw LLaVA-format turns ``{"from": "human"|"gpt", "value": str}``.
        image_token: The image marker, ``"<image>"``.

    Returns:
        The guide string, e.g. ``"What colour is the table?"`` for a two-turn sample.

    Raises:
        TGLlavaInputError: no human turn, or the last human turn is empty once markers are removed.
    """
    human_turns = [(index, turn["value"]) for index, turn in enumerate(conversations) if turn.get("from") == "human"]
    if not human_turns:
        raise TGLlavaInputError("the conversation has no human turn to take the guide text from")
    index, value = human_turns[-1]
    guide = strip_image_markers(value, image_token)
    if not guide:
        raise TGLlavaInputError(f"empty question: human turn {index} has no text besides image markers")
    return guide


def inference_guide_text(question: str, image_token: str) -> str:
    """The official inference guide: the question with markers deleted, outer whitespace stripped.

    Raises:
        TGLlavaInputError: the question is empty once markers and whitespace are removed.
    """
    guide = strip_image_markers(question, image_token)
    if not guide:
        raise TGLlavaInputError(f"empty question: {question!r} has no text besides image markers")
    return guide


def tokenize_guide(tokenizer, text: str, max_length: int) -> list[int]:
    """Tokenise one guide with the guide tower's tokenizer, truncated to ``max_length`` with the EOS kept.

    Args:
        tokenizer: The guide tower's tokenizer: CLIP's (adds ``<|startoftext|>``/``<|endoftext|>``)
            or SigLIP's (appends ``</s>``).
        text: The guide text.
        max_length: The guide tower's position count (``config.guide_max_length``: 77 CLIP, 64 SigLIP).

    Returns:
        At most ``max_length`` ids, the last one the EOS.

    Raises:
        TGLlavaInputError: the text is empty.
    """
    if not text.strip():
        raise TGLlavaInputError("empty guide text")
    ids = list(tokenizer(text, add_special_tokens=True)["input_ids"])
    if len(ids) > max_length:
        logger.info(
            "guide text has %d tokens; keeping the first %d and the end-of-text token (guide tower "
            "max length %d): %.60r...", len(ids), max_length - 1, max_length, text,
        )
        ids = ids[: max_length - 1] + [tokenizer.eos_token_id]
    return ids


def pad_guides(
    guides: Sequence[Sequence[int]], pad_token_id: int, mode: str, *, pad_to: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad guide token lists and build the mask for ``mode``.

    Args:
        guides: One id list (or 1-D integer tensor) per sample (from :func:`tokenize_guide`).
        pad_token_id: The guide tokenizer's pad id.
        mode: ``"masked"`` or ``"official"`` (see the module docstring).
        pad_to: Pad every guide to this length (SigLIP: ``guide_max_length``); ``None`` = to the
            longest guide (CLIP).

    Returns:
        ``guide_input_ids [B, Lg]`` and ``guide_attention_mask [B, Lg]``, int64, ``Lg`` = ``pad_to``
        or the longest guide.

    Raises:
        TGLlavaConfigError: unknown ``mode``.
        TGLlavaInputError: no guides, an empty one, or one longer than ``pad_to``.
    """
    if mode not in GUIDE_PADDING_MODES:
        raise TGLlavaConfigError(f"guide_padding must be one of {GUIDE_PADDING_MODES}, got {mode!r}")
    if not guides or any(len(ids) == 0 for ids in guides):
        raise TGLlavaInputError("pad_guides needs at least one guide and no empty guide")
    length = max(len(ids) for ids in guides)
    if pad_to is not None:
        if length > pad_to:
            raise TGLlavaInputError(f"a guide has {length} tokens, more than the {pad_to} it is padded to")
        length = pad_to
    input_ids = torch.full((len(guides), length), pad_token_id, dtype=torch.long)
    real = torch.zeros((len(guides), length), dtype=torch.long)
    for row, ids in enumerate(guides):
        values = ids if isinstance(ids, torch.Tensor) else list(ids)
        input_ids[row, : len(ids)] = torch.as_tensor(values, dtype=torch.long)
        real[row, : len(ids)] = 1
    if mode == "masked":
        return input_ids, real
    return input_ids, (input_ids != OFFICIAL_MASKED_ID).long()
