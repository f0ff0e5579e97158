"""Training data: LLaVA conversation JSON, lazy samples, modality-length grouping, collation.

Input format (LLaVA's ``blip_laion_cc_sbu_558k.json`` / ``llava_v1_5_mix665k.json``)::

    [{"id": "000000033471", "image": "coco/train2017/000000033471.jpg",
      "conversations": [{"from": "human", "value": "<image>\\nWhat are the colors of the bus?"},
                        {"from": "gpt", "value": "The bus is white and red."}, ...]},
     {"id": "text-only-1", "conversations": [...]}]          # no "image": a text-only row

Every preprocessing step — image loading, pad-to-square, CLIP processing, TG-DP crops, the
conversation template, ``<image>`` expansion, label masking, the guide text and its CLIP
tokenisation — is :class:`~tg_llava_eval.processing.TGLlavaProcessor`'s; this module
only decides *which* rows go in, *in what order*, and accounts for the ones that cannot.

**Bad rows are skipped, counted and reported, never lost silently.** Reasons:

==========================  ========================================  ==================
reason                      what                                      detected
==========================  ========================================  ==================
``malformed_row``           not an object / bad ``id`` or ``image``   when the file is read
``empty_conversation``      missing or empty ``conversations``        when the file is read
``unknown_role``            a turn whose ``from`` is not human/gpt    when the file is read
``missing_image``           ``image`` names no file under the folder  when the file is read
``corrupt_image``           the image file cannot be decoded          when the row is used
``label_mismatch``          tokenisation does not split at the turns  when the row is used
``bad_conversation``        other processor rejections (turn order,   when the row is used
                            marker count, nothing left to supervise)
==========================  ========================================  ==================

Cheap checks run for every row up front (a stat per image); decoding and tokenisation run lazily,
as in the official ``LazySupervisedDataset``. A row failing lazily is replaced by the next usable
row (so batch sizes stay fixed, which DeepSpeed needs) and the failure travels with the batch to
the trainer, which merges the counts of every rank and writes them to the run's report. With
``strict=True`` (``--strict-data``) the first bad row raises :class:`BadRowError` naming it.

Sampling: with ``group_by_modality_length`` (stage 2) the official
``get_modality_length_grouped_indices`` order is used (:class:`ModalityLengthGroupedSampler`):
mega-batches hold only image rows or only text-only rows (except one mixed remainder at the end),
sorted by length within, so a micro-batch rarely mixes modalities or very different lengths.
"""

from __future__ import annotations

import logging
import pathlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

from tg_llava_eval.errors import TGLlavaInputError
from tg_llava_eval.processing import LabelMismatchError, TGLlavaProcessor

# The torch-free row checks, re-exported: callers and tests import them from here too.
from tg_llava_eval.training.rows import (  # noqa: F401
    MAX_EXAMPLES_PER_REASON,
    SKIP_REASONS,
    Entry,
    SkipReport,
    check_row,
    load_llava_json,
)

logger = logging.getLogger(__name__)


class BadRowError(TGLlavaInputError):
    """A bad training row under ``strict`` data checking; the message names the row and reason."""


class _RowFailure(Exception):
    """Internal: why :meth:`LazySupervisedDataset.load` could not use a row."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class LazySupervisedDataset(Dataset):
    """LLaVA rows → tokenised samples and processed images, on demand.

    Args:
        data_path: the LLaVA JSON file.
        image_dir: folder the rows' ``image`` paths are relative to.
        processor: the processor (with the stage's conversation template).
        max_length: ``model_max_length``; sequences are cut after image-token expansion.
        strict: raise :class:`BadRowError` on the first bad row instead of skipping it.

    Raises:
        TGLlavaInputError: unreadable file, or no usable row at all.
        BadRowError: with ``strict``, the first row failing the up-front checks.

    Each item is ``{"sample": TrainingSample, "image": ImageTensors | None, "skipped": tuple}``,
    where ``skipped`` lists ``(reason, row_index, message)`` of rows that failed lazily while
    producing it.
    """

    def __init__(
        self,
        data_path: str | pathlib.Path,
        image_dir: str | pathlib.Path,
        processor: TGLlavaProcessor,
        *,
        max_length: int,
        strict: bool = False,
    ) -> None:
        self.data_path = pathlib.Path(data_path)
        self.image_dir = pathlib.Path(image_dir)
        self.processor = processor
        self.max_length = max_length
        self.strict = strict
        self.report = SkipReport()
        self.entries: list[Entry] = []
        rows = load_llava_json(self.data_path)
        for index, row in enumerate(rows):
            checked = check_row(row, index, self.image_dir)
            if isinstance(checked, Entry):
                self.entries.append(checked)
                continue
            reason, message = checked
            label = self.row_label(index, row.get("id") if isinstance(row, dict) else None)
            if strict:
                raise BadRowError(f"{label}: {reason}: {message}")
            self.report.add(reason, index, f"{label}: {message}")
        self.num_rows = len(rows)
        if not self.entries:
            raise TGLlavaInputError(f"{self.data_path}: none of its {len(rows)} rows is usable: {self.report.counts()}")
        if self.report.total:
            logger.warning(
                "%s: %d of %d rows skipped before training: %s", self.data_path, self.report.total,
                len(rows), self.report.counts(),
            )

    def row_label(self, index: int, row_id: Any) -> str:
        """``"row 12 (id 'abc') of data.json"``: how errors and reports name a row."""
        return f"row {index} (id {row_id!r}) of {self.data_path}"

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def modality_lengths(self) -> list[int]:
        """Per entry: word count, negative for text-only rows (for the grouped sampler)."""
        return [entry.modality_length for entry in self.entries]

    def load(self, entry: Entry) -> dict[str, Any]:
        """Tokenise one entry and process its image.

        Returns:
            ``{"sample": TrainingSample, "image": ImageTensors | None}``.

        Raises:
            _RowFailure: with the skip reason (``label_mismatch``, ``bad_conversation`` or
                ``corrupt_image``) and the processor's message.
        """
        has_image = entry.image_path is not None
        try:
            sample = self.processor.tokenize_training_sample(entry.conversations, has_image, max_length=self.max_length)
        except LabelMismatchError as error:
            raise _RowFailure("label_mismatch", str(error)) from error
        except TGLlavaInputError as error:
            raise _RowFailure("bad_conversation", str(error)) from error
        image = None
        if has_image:
            try:
                image = self.processor.preprocess_image(entry.image_path, source=str(entry.image_path))
            except TGLlavaInputError as error:
                raise _RowFailure("corrupt_image", str(error)) from error
        return {"sample": sample, "image": image}

    def __getitem__(self, position: int) -> dict[str, Any]:
        skipped = []
        for offset in range(len(self.entries)):
            entry = self.entries[(position + offset) % len(self.entries)]
            try:
                item = self.load(entry)
            except _RowFailure as failure:
                label = self.row_label(entry.index, entry.row_id)
                if self.strict:
                    raise BadRowError(f"{label}: {failure.reason}: {failure.message}") from failure
                logger.warning("skipping %s: %s: %s", label, failure.reason, failure.message)
                skipped.append((failure.reason, entry.index, f"{label}: {failure.message}"))
                continue
            item["skipped"] = tuple(skipped)
            return item
        raise TGLlavaInputError(f"{self.data_path}: every row failed to load; last: {skipped[-1][2]}")


class TrainingCollator:
    """Batches dataset items with :meth:`TGLlavaProcessor.collate_training`: the processing layer's
    one batch assembler (``encode_sample`` per item, then ``pad_batch`` with right padding and
    labels -100), the same code that batches inference inputs.

    Returns a dict with the model inputs (``input_ids``, ``attention_mask``, ``labels``,
    ``pixel_values``, ``crop_pixel_values``, ``guide_input_ids``, ``guide_attention_mask``) and
    ``skipped_rows``: the items' lazily skipped rows, which the trainer removes before the forward
    pass and adds to its :class:`SkipReport`.
    """

    def __init__(self, processor: TGLlavaProcessor) -> None:
        self.processor = processor

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        batch = dict(self.processor.collate_training([i["sample"] for i in items], [i["image"] for i in items]))
        batch["skipped_rows"] = tuple(skip for item in items for skip in item["skipped"])
        return batch


def _split_to_even_chunks(indices: list[int], lengths: Sequence[int], num_chunks: int) -> list[list[int]]:
    """Split ``indices`` into ``num_chunks`` chunks of equal size and similar total length."""
    if len(indices) % num_chunks != 0:
        return [indices[i::num_chunks] for i in range(num_chunks)]
    per_chunk = len(indices) // num_chunks
    chunks: list[list[int]] = [[] for _ in range(num_chunks)]
    totals = [0.0] * num_chunks
    for index in indices:
        shortest = totals.index(min(totals))
        chunks[shortest].append(index)
        totals[shortest] += lengths[index]
        if len(chunks[shortest]) == per_chunk:
            totals[shortest] = float("inf")
    return chunks


def _length_grouped(lengths: Sequence[int], batch_size: int, world_size: int, generator: torch.Generator) -> list[int]:
    """Official ``get_length_grouped_indices``: shuffle, mega-batches sorted by length, even chunks."""
    indices = torch.randperm(len(lengths), generator=generator).tolist()
    size = world_size * batch_size
    megabatches = [sorted(indices[i : i + size], key=lambda j: lengths[j], reverse=True) for i in range(0, len(indices), size)]
    return [i for mb in megabatches for chunk in _split_to_even_chunks(mb, lengths, world_size) for i in chunk]


def modality_length_grouped_indices(
    lengths: Sequence[int], batch_size: int, world_size: int, generator: torch.Generator
) -> list[int]:
    """Official ``get_modality_length_grouped_indices`` with one explicit generator.

    Args:
        lengths: per row, positive for image rows, negative for text-only rows (never 0).
        batch_size: per-device batch × gradient accumulation (as the official trainer passes).
        world_size: number of ranks.
        generator: the only randomness (the official code used the global RNG for part of it).

    Returns:
        A permutation of ``range(len(lengths))``.

    Raises:
        ValueError: a zero length.
    """
    if any(length == 0 for length in lengths):
        raise ValueError("modality lengths must be non-zero (positive: image rows, negative: text-only rows)")
    if all(length > 0 for length in lengths) or all(length < 0 for length in lengths):
        return _length_grouped([abs(x) for x in lengths], batch_size, world_size, generator)
    image_rows = [i for i, length in enumerate(lengths) if length > 0]
    text_rows = [i for i, length in enumerate(lengths) if length < 0]
    image_order = [image_rows[i] for i in _length_grouped([lengths[i] for i in image_rows], batch_size, world_size, generator)]
    text_order = [text_rows[i] for i in _length_grouped([-lengths[i] for i in text_rows], batch_size, world_size, generator)]
    size = world_size * batch_size
    image_mbs = [image_order[i : i + size] for i in range(0, len(image_order), size)]
    text_mbs = [text_order[i : i + size] for i in range(0, len(text_order), size)]
    remainder = image_mbs[-1] + text_mbs[-1]
    megabatches = image_mbs[:-1] + text_mbs[:-1]
    megabatches = [megabatches[i] for i in torch.randperm(len(megabatches), generator=generator).tolist()]
    if remainder:
        megabatches.append(sorted(remainder))
    return [i for mb in megabatches for i in mb]


class ModalityLengthGroupedSampler(Sampler[int]):
    """Sampler of :func:`modality_length_grouped_indices`, reseeded per epoch (``seed + epoch``).

    Deterministic for a given seed and epoch, so a run resumed from ``checkpoint-N`` sees the same
    order as an uninterrupted one.

    Args:
        lengths: modality lengths of the dataset's entries.
        batch_size: per-device batch × gradient accumulation.
        world_size: number of ranks.
        seed: base seed (the run's ``--seed``).
    """

    def __init__(self, lengths: Sequence[int], *, batch_size: int, world_size: int, seed: int) -> None:
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.world_size = world_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by the trainer at each epoch start."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(modality_length_grouped_indices(self.lengths, self.batch_size, self.world_size, generator))
