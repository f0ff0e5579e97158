"""The one batch assembler of model inputs: encode one sample, pad many.

Every path into the model builds its batch with this pair:

* the processor's ``__call__`` (generation, left padding; scoring, right padding with labels),
* training collation (:meth:`~.processing_tg_llava.TGLlavaProcessor.collate_training`: right
  padding, :data:`~.tokenization.IGNORE_INDEX` labels),
* the inference engine, which encodes the text of each request and puts the *cached* vision
  features (``patch_features``/``crop_features``) into the sample instead of pixels.

:func:`encode_sample` turns one already-tokenised sample into a dict of unbatched tensors;
:func:`pad_batch` pads and stacks such dicts. The split is the point: anything that replaces a
sample's tensors (the engine's feature cache) does so between the two calls, and the padding rules
live here once.

Padding rules (unchanged from the three former copies, so every tensor is bit-identical):

===========================  =====================  ==========================================
key                          padded on              pad value
===========================  =====================  ==========================================
``input_ids``                ``padding_side``       the LLM pad id (pad token, else unk)
``attention_mask``           ``padding_side``       0 (built from the lengths, 1 on real tokens)
``labels``                   ``padding_side``       :data:`~.tokenization.IGNORE_INDEX` (-100)
``guide_input_ids``          right, always          the guide pad id; the mask follows the
                                                    ``guide_padding`` mode (see :mod:`.guide`)
anything else                —                      stacked as is (same shape in every sample)
===========================  =====================  ==========================================

``position_ids`` (optional) count real tokens from the attention mask, so a left-padded row sees
the positions it would see alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ..errors import TGLlavaInputError
from .guide import pad_guides
from .image_processing import ImageTensors
from .tokenization import IGNORE_INDEX

#: Padding sides of the LLM sequences.
PADDING_SIDES = ("left", "right")
#: Keys padded along the sequence axis on ``padding_side`` (pad id resp. ``label_pad_id``).
SEQUENCE_KEYS = ("input_ids", "labels")
#: The guide tower's ids: right-padded, masked by :func:`~.guide.pad_guides`.
GUIDE_KEY = "guide_input_ids"

IntSequence = Sequence[int] | torch.Tensor


def pad_sequences(rows: Sequence[IntSequence], value: int, side: str) -> torch.Tensor:
    """Pad integer rows to the longest on ``side``.

    Args:
        rows: Lists of ints or 1-D integer tensors (empty rows allowed).
        value: The pad value.
        side: ``"left"`` or ``"right"``.

    Returns:
        ``[B, L]`` int64, ``L`` the longest row.

    Raises:
        TGLlavaInputError: no rows, or an unknown side.
    """
    if side not in PADDING_SIDES:
        raise TGLlavaInputError(f"padding side must be one of {PADDING_SIDES}, got {side!r}")
    if not rows:
        raise TGLlavaInputError("nothing to pad: no rows")
    length = max(len(row) for row in rows)
    out = torch.full((len(rows), length), value, dtype=torch.long)
    for index, row in enumerate(rows):
        if len(row) == 0:
            continue
        values = torch.as_tensor(row if isinstance(row, torch.Tensor) else list(row), dtype=torch.long)
        if side == "left":
            out[index, length - len(row) :] = values
        else:
            out[index, : len(row)] = values
    return out


def encode_sample(
    input_ids: IntSequence,
    guide_input_ids: IntSequence,
    *,
    labels: IntSequence | None = None,
    image: ImageTensors | None = None,
) -> dict[str, torch.Tensor]:
    """One sample's model inputs as unbatched tensors (the input of :func:`pad_batch`).

    Args:
        input_ids: LLM ids, image tokens already expanded (length ``L``).
        guide_input_ids: The guide's CLIP ids (length ``Lg``).
        labels: Training/scoring targets aligned with ``input_ids`` (:data:`IGNORE_INDEX` where
            not supervised), or ``None``.
        image: The processed image (a zero image for text-only samples where the model needs
            pixels), or ``None`` to leave the visual inputs to the caller (the engine adds cached
            ``patch_features``/``crop_features`` instead).

    Returns:
        ``input_ids [L]``, ``guide_input_ids [Lg]`` (int64), ``labels [L]`` when given,
        ``pixel_values [3, S, S]`` and ``crop_pixel_values [C, 3, S, S]`` when ``image`` is given.
        Callers may add further per-sample tensors of fixed shape; :func:`pad_batch` stacks them.

    Raises:
        TGLlavaInputError: ``labels`` of another length than ``input_ids``.
    """
    sample = {
        "input_ids": torch.as_tensor(list(input_ids), dtype=torch.long),
        "guide_input_ids": torch.as_tensor(list(guide_input_ids), dtype=torch.long),
    }
    if labels is not None:
        if len(labels) != len(input_ids):
            raise TGLlavaInputError(f"{len(labels)} labels for {len(input_ids)} input ids")
        sample["labels"] = torch.as_tensor(list(labels), dtype=torch.long)
    if image is not None:
        sample["pixel_values"] = image.pixel_values
        sample["crop_pixel_values"] = image.crop_pixel_values
    return sample


def pad_batch(
    samples: Sequence[Mapping[str, torch.Tensor]],
    *,
    padding_side: str,
    pad_token_id: int,
    guide_pad_token_id: int,
    guide_padding: str,
    label_pad_id: int = IGNORE_INDEX,
    position_ids: bool = False,
    guide_pad_to: int | None = None,
) -> dict[str, torch.Tensor]:
    """Pad and stack samples of :func:`encode_sample` into model inputs (rules: module table).

    Args:
        samples: Dicts with the same keys; ``input_ids`` and ``guide_input_ids`` required.
        padding_side: ``"left"`` (generation) or ``"right"`` (training, scoring).
        pad_token_id: The LLM pad id.
        guide_pad_token_id: The guide tokenizer's pad id.
        guide_padding: ``"masked"`` or ``"official"`` (see :mod:`.guide`).
        label_pad_id: Label of pad positions.
        position_ids: Also return ``position_ids [B, L]`` = real tokens so far − 1, clamped at 0.
        guide_pad_to: Pad guides to this length (SigLIP's ``max_length``); ``None`` = the longest.

    Returns:
        ``input_ids``, ``attention_mask`` ``[B, L]``, ``labels [B, L]`` when the samples have
        labels, every other sample tensor stacked (``[B, ...]``), ``guide_input_ids``,
        ``guide_attention_mask`` ``[B, Lg]`` and optionally ``position_ids [B, L]``; integer
        tensors are int64, the stacked ones keep their dtype and device.

    Raises:
        TGLlavaInputError: no samples, samples with different keys (names the first differing
            sample), a missing required key, or an unknown padding side.
    """
    if not samples:
        raise TGLlavaInputError("pad_batch: no samples")
    if padding_side not in PADDING_SIDES:
        raise TGLlavaInputError(f"padding_side must be one of {PADDING_SIDES}, got {padding_side!r}")
    keys = list(samples[0])
    for index, sample in enumerate(samples):
        if set(sample) != set(keys):
            raise TGLlavaInputError(
                f"pad_batch: sample {index} has keys {sorted(sample)} but sample 0 has {sorted(keys)}"
            )
    missing = [key for key in ("input_ids", GUIDE_KEY) if key not in keys]
    if missing:
        raise TGLlavaInputError(f"pad_batch: samples lack {missing}")
    rows = [sample["input_ids"] for sample in samples]
    batch = {
        "input_ids": pad_sequences(rows, pad_token_id, padding_side),
        "attention_mask": pad_sequences([[1] * len(row) for row in rows], 0, padding_side),
    }
    if "labels" in keys:
        batch["labels"] = pad_sequences([sample["labels"] for sample in samples], label_pad_id, padding_side)
    for key in keys:
        if key not in SEQUENCE_KEYS and key != GUIDE_KEY:
            batch[key] = torch.stack([sample[key] for sample in samples])
    batch["guide_input_ids"], batch["guide_attention_mask"] = pad_guides(
        [sample[GUIDE_KEY] for sample in samples], guide_pad_token_id, guide_padding, pad_to=guide_pad_to
    )
    if position_ids:
        # Positions follow the attention mask, so a left-padded row sees the same positions as alone.
        batch["position_ids"] = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    return batch


__all__ = ["PADDING_SIDES", "encode_sample", "pad_batch", "pad_sequences"]
