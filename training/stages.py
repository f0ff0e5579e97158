"""Which parameters a training stage updates: named module groups, never name matching.

The model declares its groups (``model.trainable_groups()``: ``projector``, ``text_guided_mask``,
``detail_perceiver``, ``llm``; ``model.frozen_groups()``: ``vision_tower``, ``guide_tower``) and a
stage recipe lists the trainable ones by name. :func:`apply_stage_groups` is the
one function that sets ``requires_grad``: everything off, then the listed groups on. It returns
and logs a table of trainable/frozen parameter counts per group, so a run's log shows at a glance
what it trains — the official code toggled ``requires_grad`` in loops over parameter-name
substrings (``train/llava_trainer.py``), which is what this replaces.

A group listed by the recipe but absent from the model (``text_guided_mask`` on a LLaVA-1.5
baseline or a ``no-fom`` ablation) is reported as ``absent`` and skipped: the same recipe serves
TG-LLaVA, its baseline and its ablations. A name that is no group at all is an error.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

from torch import nn

from tg_llava_eval.errors import TGLlavaConfigError
from tg_llava_eval.modeling.modeling_tg_llava import FROZEN_GROUPS, TRAINABLE_GROUPS

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class GroupCount:
    """One row of the parameter table.

    Attributes:
        group: group name (or ``"other"`` for parameters in no group, ``"total"``).
        status: ``"trainable"``, ``"frozen"`` or ``"absent"``.
        trainable: number of parameters with ``requires_grad``.
        frozen: number of parameters without.
    """

    group: str
    status: str
    trainable: int
    frozen: int


def _numel(parameter: nn.Parameter) -> int:
    """Full element count, also for ZeRO-3-partitioned parameters (their ``ds_numel``)."""
    return int(getattr(parameter, "ds_numel", parameter.numel()))


def count_parameters(model: nn.Module) -> list[GroupCount]:
    """Trainable/frozen parameter counts per group of ``model``, plus ``other`` and ``total``.

    Args:
        model: a ``TGLlavaForConditionalGeneration`` (anything with ``trainable_groups()`` and
            ``frozen_groups()``).

    Returns:
        Rows in the order trainable groups, frozen groups, ``other`` (only if non-empty), ``total``.
        Shared parameters are counted once, in the first group that holds them.
    """
    groups = {**model.trainable_groups(), **model.frozen_groups()}
    seen: set[int] = set()
    rows = []
    for name in [*TRAINABLE_GROUPS, *FROZEN_GROUPS]:
        if name not in groups:
            rows.append(GroupCount(name, "absent", 0, 0))
            continue
        trainable = frozen = 0
        for parameter in groups[name].parameters():
            if id(parameter) in seen:
                continue
            seen.add(id(parameter))
            if parameter.requires_grad:
                trainable += _numel(parameter)
            else:
                frozen += _numel(parameter)
        status = "trainable" if trainable and not frozen else "frozen" if not trainable else "partial"
        rows.append(GroupCount(name, status, trainable, frozen))
    other = [p for p in model.parameters() if id(p) not in seen]
    if other:
        trainable = sum(_numel(p) for p in other if p.requires_grad)
        rows.append(GroupCount("other", "trainable" if trainable else "frozen", trainable,
                               sum(_numel(p) for p in other) - trainable))
    rows.append(GroupCount("total", "", sum(r.trainable for r in rows), sum(r.frozen for r in rows)))
    return rows


def format_parameter_table(rows: Sequence[GroupCount]) -> str:
    """A fixed-width text table of :func:`count_parameters` rows (for the log)."""
    lines = [f"{'group':<18} {'status':<10} {'trainable':>13} {'frozen':>13}"]
    lines += [f"{r.group:<18} {r.status:<10} {r.trainable:>13,} {r.frozen:>13,}" for r in rows]
    return "\n".join(lines)


def apply_stage_groups(model: nn.Module, groups: Sequence[str]) -> list[GroupCount]:
    """Freeze ``model`` except the named trainable groups; log and return the parameter table.

    Args:
        model: a ``TGLlavaForConditionalGeneration``.
        groups: names from ``TRAINABLE_GROUPS`` (a stage recipe's ``trainable_groups``).

    Returns:
        The rows of :func:`count_parameters` after the change.

    Raises:
        TGLlavaConfigError: a name that is not a trainable group (frozen-group names included),
            or a selection that leaves nothing to train.
    """
    unknown = [name for name in groups if name not in TRAINABLE_GROUPS]
    if unknown:
        raise TGLlavaConfigError(
            f"unknown trainable group(s) {unknown}; trainable groups are {list(TRAINABLE_GROUPS)}, "
            f"always frozen: {list(FROZEN_GROUPS)}"
        )
    available = model.trainable_groups()
    model.requires_grad_(False)
    for name in groups:
        if name in available:
            available[name].requires_grad_(True)
        else:
            logger.info("group %r is absent from this model (switched off); nothing to train there", name)
    rows = count_parameters(model)
    if not any(row.trainable for row in rows if row.group != "total"):
        raise TGLlavaConfigError(f"groups {list(groups)} leave no trainable parameter in this model")
    logger.info("trainable parameters by group:\n%s", format_parameter_table(rows))
    return rows
