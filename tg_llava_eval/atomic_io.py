"""Atomic outputs: a file or folder appears complete or not at all.

Every command that writes something a later command trusts (``create``, ``convert``, the training
saves, ``collect``, ``leaderboard``, the run manifests) writes into a temporary sibling and renames
it into place, so a SIGKILL at any moment leaves the previous complete output or none, never a
half-written checkpoint or CSV. The temporaries are named so that they are recognisable:
``.<name>.tmp-<pid>`` (being written) and ``.<name>.old-<pid>`` (a folder being replaced); a later
writer or reader that finds one says so (:func:`warn_leftovers`) and ignores it. Plain standard
library: results and leaderboards use it without torch. Docs: docs/architecture.md, "Outputs".
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

#: Infix of a temporary sibling being written, and of a replaced folder about to be removed.
TEMPORARY_INFIX = ".tmp-"
REPLACED_INFIX = ".old-"


def temporary_sibling(path: Path, infix: str = TEMPORARY_INFIX) -> Path:
    """``<parent>/.<name><infix><pid>``: hidden, beside ``path`` (same file system, so the rename is atomic)."""
    return path.with_name(f".{path.name}{infix}{os.getpid()}")


def leftovers(path: str | os.PathLike) -> list[Path]:
    """Temporaries of ``path`` left by a writer that was killed (any process id)."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    prefix = f".{path.name}"
    found = []
    for sibling in path.parent.iterdir():
        rest = sibling.name[len(prefix):] if sibling.name.startswith(prefix) else ""
        for infix in (TEMPORARY_INFIX, REPLACED_INFIX):
            if rest.startswith(infix) and rest[len(infix):].isdigit():
                found.append(sibling)
    return sorted(found)


def warn_leftovers(path: str | os.PathLike) -> list[Path]:
    """Log a warning naming the temporaries a killed writer left beside ``path`` (they are ignored)."""
    found = leftovers(path)
    if found:
        logger.warning("%s: ignoring %d incomplete output(s) a killed earlier run left: %s", path, len(found),
                       ", ".join(p.name for p in found))
    return found


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on an error it is removed.

    Example::

        with atomic_file(out / "results.csv") as tmp:
            frame.to_csv(tmp, index=False)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    warn_leftovers(path)
    temporary = temporary_sibling(path)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_file(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder to fill; on success it becomes ``path``.

    An existing ``path`` is replaced: it is renamed aside, the new folder renamed into place, and
    the old one removed. Between those two renames ``path`` is briefly absent (the old copy is the
    ``.old-`` sibling), so a kill there leaves no output, never a partial one. On an error the
    temporary folder is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    warn_leftovers(path)
    temporary = temporary_sibling(path)
    if temporary.exists():
        shutil.rmtree(temporary)
    temporary.mkdir()
    try:
        yield temporary
        replace_directory(temporary, path)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary)


def replace_directory(staged: Path, target: Path) -> None:
    """Rename the complete folder ``staged`` to ``target``, replacing an existing ``target``.

    An existing ``target`` is renamed aside (``.old-``) first and deleted afterwards; between the
    two renames ``target`` is absent, never partial.
    """
    aside = None
    if target.exists():
        aside = temporary_sibling(target, REPLACED_INFIX)
        os.replace(target, aside)
    os.replace(staged, target)
    if aside is not None:
        shutil.rmtree(aside)
