"""Errors and documented skips of the results layer.

Two outcomes exist for an input file that cannot be turned into records, and neither is silent:

* :class:`ResultFileError` — the file is malformed (truncated CSV, missing column, non-numeric
  score, empty results JSON, a layout no parser recognises). The message starts with the file path
  and says what is wrong. ``collect`` raises it, unless told to skip bad files
  (``--skip-bad``), in which case it becomes a :class:`Skip`.
* :class:`Skip` — the file is deliberately not read (a dangling symlink, a dataset VLMEvalKit
  marked as failed, a prediction file without a score file, ...). Each skip is logged as a warning
  when it happens and returned by ``collect`` so that callers can report them; the CLI prints a
  summary line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tg_llava_eval.errors import TGLlavaInputError


class ResultFileError(TGLlavaInputError):
    """A score/result file that cannot be parsed; the message names the file and the problem.

    Args:
        path: The offending file (or folder, for layout errors).
        problem: What is wrong, e.g. ``"line 3: column 'Overall': 'n/a' is not a number"``.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):  # keep the two-argument constructor picklable (multiprocessing, pytest-xdist)
        return (type(self), (self.path, self.problem))


@dataclass(frozen=True)
class Skip:
    """A file (or part of one) that was deliberately not turned into records.

    Attributes:
        path: The file or folder.
        reason: Why, in words (shown in the warning and in the CLI summary).
    """

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"
