"""Up-front checks of LLaVA conversation rows, without torch (the command line runs them first).

``tg-llava-eval train`` checks its ``--data`` file with these functions before it imports torch,
transformers or DeepSpeed, so that a wrong file or image folder is reported in seconds
(:mod:`~tg_llava_eval.training.preflight`); :class:`~tg_llava_eval.training.data.LazySupervisedDataset`
applies the same checks row by row. The skip reasons and their meaning are listed in
:mod:`~tg_llava_eval.training.data`.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import pathlib
from typing import Any

from tg_llava_eval.conversation import LLAVA_ROLES
from tg_llava_eval.errors import TGLlavaInputError

#: Skip reasons (see the module docstring), in report order.
SKIP_REASONS: tuple[str, ...] = (
    "malformed_row",
    "empty_conversation",
    "unknown_role",
    "missing_image",
    "corrupt_image",
    "label_mismatch",
    "bad_conversation",
)
#: Row labels kept per reason in the report (the counts are always complete).
MAX_EXAMPLES_PER_REASON = 5


@dataclasses.dataclass
class SkipReport:
    """Skipped rows by reason: unique row indices per reason and a few example messages.

    Attributes:
        rows: reason -> set of row indices (0-based positions in the JSON list).
        examples: reason -> up to :data:`MAX_EXAMPLES_PER_REASON` ``"row label: message"`` strings.
    """

    rows: dict[str, set[int]] = dataclasses.field(default_factory=lambda: collections.defaultdict(set))
    examples: dict[str, list[str]] = dataclasses.field(default_factory=lambda: collections.defaultdict(list))

    def add(self, reason: str, index: int, message: str) -> None:
        """Record that row ``index`` was skipped for ``reason`` (idempotent per row and reason)."""
        if index in self.rows[reason]:
            return
        self.rows[reason].add(index)
        if len(self.examples[reason]) < MAX_EXAMPLES_PER_REASON:
            self.examples[reason].append(message)

    def merge(self, other: SkipReport) -> None:
        """Add every row and example of ``other`` (e.g. another rank's report)."""
        for reason, indices in other.rows.items():
            self.rows[reason].update(indices)
            room = MAX_EXAMPLES_PER_REASON - len(self.examples[reason])
            new = [m for m in other.examples.get(reason, []) if m not in self.examples[reason]]
            self.examples[reason].extend(new[: max(room, 0)])

    def counts(self) -> dict[str, int]:
        """reason -> number of distinct skipped rows (reasons with none omitted)."""
        return {reason: len(self.rows[reason]) for reason in SKIP_REASONS if self.rows.get(reason)}

    @property
    def total(self) -> int:
        """Distinct rows skipped for any reason."""
        return len(set().union(*self.rows.values())) if self.rows else 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: counts, total and examples per reason."""
        return {
            "skipped_total": self.total,
            "skipped_by_reason": self.counts(),
            "examples": {r: list(self.examples[r]) for r in SKIP_REASONS if self.examples.get(r)},
        }


def load_llava_json(path: str | pathlib.Path) -> list[Any]:
    """Read a LLaVA conversation file: a JSON list of rows (rows are checked later, one by one).

    Raises:
        TGLlavaInputError: missing file, invalid JSON or a top level that is not a list (names
            the file).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise TGLlavaInputError(f"training data file not found: {path}")
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise TGLlavaInputError(f"{path} is not valid UTF-8 JSON: {error}") from error
    if not isinstance(rows, list):
        raise TGLlavaInputError(f"{path}: expected a JSON list of rows, got {type(rows).__name__}")
    return rows


@dataclasses.dataclass(frozen=True)
class Entry:
    """A row that passed the up-front checks.

    Attributes:
        index: position in the JSON list.
        row_id: the row's ``id`` (or the index as text).
        conversations: the raw turns.
        image_path: resolved image file, ``None`` for a text-only row.
        modality_length: word count, positive for image rows and negative for text-only rows
            (the official ``modality_lengths``).
    """

    index: int
    row_id: str
    conversations: list[dict]
    image_path: pathlib.Path | None
    modality_length: int


def check_row(row: Any, index: int, image_dir: pathlib.Path) -> Entry | tuple[str, str]:
    """Up-front, decode-free checks of one row.

    Returns:
        An :class:`Entry`, or ``(reason, message)`` for a row to skip.
    """
    if not isinstance(row, dict):
        return "malformed_row", f"row is a {type(row).__name__}, not an object"
    row_id = row.get("id", index)
    if not isinstance(row_id, (str, int)):
        return "malformed_row", f"'id' must be a string or integer, got {row_id!r}"
    conversations = row.get("conversations")
    if not isinstance(conversations, list) or not conversations:
        return "empty_conversation", f"'conversations' is missing or empty: {conversations!r}"
    for turn_index, turn in enumerate(conversations):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            return "malformed_row", f"turn {turn_index} is not {{'from': ..., 'value': str}}: {turn!r}"
        if turn.get("from") not in LLAVA_ROLES:
            return "unknown_role", f"turn {turn_index} has unknown role {turn.get('from')!r}; known {sorted(LLAVA_ROLES)}"
    image_path = None
    if "image" in row:
        image = row["image"]
        if not isinstance(image, str) or not image:
            return "malformed_row", f"'image' must be a non-empty relative path, got {image!r}"
        image_path = image_dir / image
        if not image_path.is_file():
            return "missing_image", f"image file not found: {image_path}"
    words = max(1, sum(len(turn["value"].split()) for turn in conversations))
    return Entry(index, str(row_id), conversations, image_path, words if image_path else -words)
