"""Plumbing shared by the toolkit parsers: context, parse output, times, headline marking.

Both parsers (:mod:`.vlmevalkit_outputs`, :mod:`.lmms_eval_outputs`) turn one unit of toolkit
output (a VLMEvalKit run folder, an lmms-eval results file) into :class:`ParsedOutput`. They share
the registry lookups, the identity resolution, the conversion of run times to one comparable
form and the rule that picks each dataset's headline (``primary``) record, all defined here once.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tg_llava_eval.results.benchmarks import BenchmarkRegistry, Headline
from tg_llava_eval.results.errors import Skip
from tg_llava_eval.results.identity import MappingEntry, ModelIdentity, resolve_identity
from tg_llava_eval.results.manifest import RunManifest
from tg_llava_eval.results.records import SamplePrediction, ScoreRecord

logger = logging.getLogger(__name__)


@dataclass
class ParseContext:
    """What a parser needs besides the files.

    Attributes:
        registry: Benchmark registry (defaults + user specs).
        mapping: User model mapping (exact toolkit model name -> variant, optional display name).
        read_samples: Whether to read per-sample predictions (for answer agreement).
    """

    registry: BenchmarkRegistry = field(default_factory=BenchmarkRegistry)
    mapping: Mapping[str, MappingEntry] = field(default_factory=dict)
    read_samples: bool = True


@dataclass
class ParsedOutput:
    """Result of parsing one unit of output.

    Attributes:
        records: Scores.
        samples: Per-sample predictions (empty unless requested and available).
        skips: Things deliberately not read, each already logged as a warning.
        renamed: ``{(toolkit, toolkit model name): display name}`` for every model the user
            mapping renamed (the records carry the display name; this keeps the toolkit's).
    """

    records: list[ScoreRecord] = field(default_factory=list)
    samples: list[SamplePrediction] = field(default_factory=list)
    skips: list[Skip] = field(default_factory=list)
    renamed: dict[tuple[str, str], str] = field(default_factory=dict)

    def skip(self, path: str | Path, reason: str) -> None:
        """Record and log a documented skip."""
        item = Skip(str(path), reason)
        logger.warning("skipped %s", item)
        self.skips.append(item)

    def extend(self, other: ParsedOutput) -> None:
        """Append another output's records, samples, skips and renamings."""
        self.records.extend(other.records)
        self.samples.extend(other.samples)
        self.skips.extend(other.skips)
        self.renamed.update(other.renamed)

    def note_name(self, toolkit: str, model: str, identity: ModelIdentity) -> str:
        """The name records of ``model`` carry (:meth:`ModelIdentity.table_name`); a renaming by
        the user mapping is remembered in :attr:`renamed` (:mod:`.collect` logs it once)."""
        shown = identity.table_name(model)
        if shown != model:
            self.renamed[(toolkit, model)] = shown
        return shown


def identify(
    ctx: ParseContext,
    model: str,
    manifest: RunManifest | None,
    model_args_variant: str = "",
    aliases: tuple[str, ...] = (),
) -> ModelIdentity:
    """Resolve a model's identity with the context's mapping (see :mod:`.identity`)."""
    return resolve_identity(
        model, mapping=ctx.mapping, manifest=manifest, model_args_variant=model_args_variant, aliases=aliases
    )


def iso_utc(moment: dt.datetime) -> str:
    """ISO-8601 in UTC, seconds precision; a naive time is taken as UTC.

    All ``run_time`` values go through here so that they compare correctly as strings.
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc).replace(microsecond=0).isoformat()


def parse_iso(text: str) -> str:
    """Normalise an ISO-8601 string with :func:`iso_utc`; ``""`` when it does not parse."""
    try:
        return iso_utc(dt.datetime.fromisoformat(text))
    except (TypeError, ValueError):
        return ""


def file_time(path: Path) -> str:
    """Modification time of ``path`` as :func:`iso_utc` (last resort for ``run_time``)."""
    return iso_utc(dt.datetime.fromtimestamp(path.stat().st_mtime, tz=dt.timezone.utc))


def mark_primary(
    records: list[ScoreRecord], headline: Headline | None, where: str
) -> list[ScoreRecord]:
    """Set ``primary`` on the one record of one dataset that matches ``headline``.

    Args:
        records: All records of one dataset from one file (``primary`` False on entry).
        headline: The headline rule; ``None`` leaves every record non-primary.
        where: File name for the warning when no record matches.

    Returns:
        The records, with at most one ``primary=True``. If the headline's split is ``None`` and
        the dataset has several splits, none is primary and a warning says so (the records are
        kept: declare the split with a benchmark spec to choose).
    """
    if headline is None or not records:
        return records
    candidates = [r for r in records if r.metric == headline.metric and r.category == headline.category]
    if headline.split is not None:
        candidates = [r for r in candidates if r.split == headline.split]
    splits = sorted({r.split for r in candidates})
    if len(candidates) != 1:
        if len(splits) > 1:
            logger.warning(
                "%s: no headline score for %s: %d splits (%s) have metric %r; declare the split "
                "with a benchmark spec", where, records[0].dataset, len(splits), ", ".join(splits), headline.metric,
            )
        else:
            logger.warning(
                "%s: headline %s (split %s, category %r) not found for %s",
                where, headline.metric, headline.split, headline.category, records[0].dataset,
            )
        return records
    chosen = candidates[0]
    return [r.replace(primary=True) if r is chosen else r for r in records]
