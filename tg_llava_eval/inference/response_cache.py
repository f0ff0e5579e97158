"""Persistent cache of the engine's answers, so that a killed evaluation resumes where it stopped.

A multi-hour evaluation killed at hour three (preempted job, SIGKILL, a full disk) should not start
over. :class:`ResponseCache` stores every answer the engine gives in a SQLite file, one
transaction per batch, and a later run of the same command answers the requests found there
without running the model. The lmms-eval wrapper uses it (``--model_args cache_dir=DIR``,
docs/lmms_eval.md "Resume"); nothing here knows lmms-eval: the cache speaks the engine's
request/result records (:mod:`.requests`), which is why it lives in the inference layer.

**The key of an answer** is the SHA-256 of a canonical JSON document made of

* the *model key*: :data:`SCHEMA_VERSION`, the tg-llava-eval version, the **checkpoint
  fingerprint** (below) and the caller's *settings* (the lmms-eval wrapper passes the effective
  conversation template, dtype, ``max_length`` and default answer length);
* the *request type* (the caller's name for the call: ``generate_until``, ``loglikelihood``,
  ``generate_until_multi_round``);
* the *full request*: every field of the :class:`~.requests.GenerationRequest` /
  :class:`~.requests.LoglikelihoodRequest` (prompt, continuation, guide text, history, the
  generation settings ``max_new_tokens``, ``temperature``, ``top_p``, ``num_beams``, ``stop``),
  images replaced by the SHA-256 of their content (:func:`~.vision_cache.image_digest`); only the
  free-form ``request_id`` label is left out.

A changed checkpoint, setting or request therefore never finds an old answer. What is *not* in
the key is how the work is scheduled: batch size, device, number of processes, the vision cache
(they change answers by float rounding at most; see "Byte-identical resumes").

**Checkpoint fingerprint**: SHA-256 over the sorted ``(relative path, size, SHA-256 of the
content)`` of every file under the checkpoint directory (``config.json``, the processor and
tokenizer files, every weight shard; names starting with ``.`` are skipped). Hashing a 15 GB
checkpoint takes a while, so each file's hash is kept in the cache file's ``file_hashes`` table
keyed by ``(resolved path, size, mtime_ns)`` and the file is re-read only when one of them
changes. (A file rewritten with the same size *and* modification time, e.g. ``cp -p`` of another
checkpoint over it, would go unnoticed, as with ``make``; delete the cache file then.)

**Files and concurrency**: one SQLite file per rank and world size,
``<cache_dir>/tg_llava_responses.rank<R>-of-<W>.sqlite`` (:func:`cache_file_name`), so no two
processes of one run ever write one file: this holds on network filesystems too, where SQLite's
locking (and WAL mode's shared memory) cannot be trusted. Two *separate* runs that share a cache
folder serialise on SQLite's file lock (busy timeout :data:`BUSY_TIMEOUT_S`; the default
rollback journal, not WAL, for the same reason). The same command started again gets the same
rank and the same document shard, hence the same file; a run with another number of processes
starts from an empty file.

**Atomic batches**: the answers of one :meth:`ResponseCache.answer` call (one wrapper batch) are
written in one transaction, so a SIGKILL leaves each batch either fully recorded or absent, never a
half-written row (SQLite rolls back the interrupted transaction when the file is opened next).
Values are JSON text (answers, token counts, log-probabilities as floats written with ``repr``
precision, booleans), never pickles. Failed requests (``error`` set: a missing image, an empty
question) are not stored: they cost no model call, and the input may have been fixed by the next run.

**Byte-identical resumes**: a batch is either wholly cached or recomputed with exactly the
requests it had in the first run (wrapper batches are deterministic), so on the same machine a
resumed run gives the same bits as an uninterrupted one, log-likelihoods included. Sampled
answers (``temperature > 0``) are cached too, but the random state of a resumed run differs, so
its *new* draws differ from an uninterrupted run's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import sqlite3
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .. import __version__
from ..errors import TGLlavaConfigError
from .requests import GenerationRequest, GenerationResult, LoglikelihoodRequest, LoglikelihoodResult
from .vision_cache import image_digest

logger = logging.getLogger(__name__)

#: Version of the key and value layout; bump it when either changes (old answers are then ignored).
SCHEMA_VERSION = 1
#: Seconds a writer waits for another process's lock on the same file before failing.
BUSY_TIMEOUT_S = 60.0
#: Bytes read at a time when hashing checkpoint files.
HASH_CHUNK_BYTES = 16 * 1024 * 1024
#: Stem of the per-rank cache files.
CACHE_FILE_STEM = "tg_llava_responses"
#: Keys per ``SELECT ... IN (...)``: well below SQLite's limit on bound parameters in every build.
MAX_KEYS_PER_QUERY = 500
#: Request fields that only label a request (error messages) and do not change its answer.
LABEL_FIELDS = frozenset({"request_id"})
#: Result fields that are not stored (failed results are never stored at all).
UNSTORED_RESULT_FIELDS = frozenset({"error"})

Request = GenerationRequest | LoglikelihoodRequest
ResultT = TypeVar("ResultT", GenerationResult, LoglikelihoodResult)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,       -- SHA-256 of model key, request type and request (module docstring)
    request_type TEXT NOT NULL,
    model_key TEXT NOT NULL,
    response TEXT NOT NULL      -- JSON of the result's fields
);
CREATE TABLE IF NOT EXISTS file_hashes (
    path TEXT PRIMARY KEY,      -- resolved path of a checkpoint file
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL
);
"""


def cache_file_name(rank: int, world_size: int) -> str:
    """Name of the cache file of one rank: ``tg_llava_responses.rank<R>-of-<W>.sqlite``."""
    return f"{CACHE_FILE_STEM}.rank{rank}-of-{world_size}.sqlite"


def check_cache_dir(value: Any, *, argument: str = "cache_dir") -> Path:
    """Validate a cache folder argument, creating the folder when it does not exist yet.

    Args:
        value: The argument's value (a path; lmms-eval may pass numbers for numeric names).
        argument: Argument name for the message (``cache_dir``).

    Returns:
        The folder.

    Raises:
        TGLlavaConfigError: (one line naming the argument and value) not a path, a file, a folder
            that cannot be created or is not writable.
    """
    if isinstance(value, bool) or not isinstance(value, (str, os.PathLike, int)):
        raise TGLlavaConfigError(f"{argument}={value!r}: expected the path of a folder for the response cache")
    path = Path(str(value)).expanduser()
    if path.exists() and not path.is_dir():
        raise TGLlavaConfigError(f"{argument}={str(value)!r} is a file; expected a folder for the response cache")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TGLlavaConfigError(
            f"{argument}={str(value)!r}: cannot create the folder ({exc.strerror or type(exc).__name__})"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise TGLlavaConfigError(f"{argument}={str(value)!r} is not writable; expected a writable folder")
    return path


def checkpoint_files(checkpoint_dir: Path) -> list[Path]:
    """The files that make up a checkpoint: every file below it, names starting with ``.`` excluded
    (``.cache``, ``.git``), sorted by relative path."""
    files = []
    for path in checkpoint_dir.rglob("*"):
        relative = path.relative_to(checkpoint_dir)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        files.append(path)
    return sorted(files, key=lambda p: p.relative_to(checkpoint_dir).as_posix())


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's content, read :data:`HASH_CHUNK_BYTES` at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _canonical(document: Any) -> str:
    """Canonical JSON (sorted keys, no spaces, floats at ``repr`` precision)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True)


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _image_key(image: Any) -> str | None:
    """``sha256:<hex>`` of an image's content; ``None`` when it cannot be read."""
    digest = image_digest(image)
    return f"sha256:{digest}" if digest is not None else None


class ResponseCache:
    """SQLite-backed answers of one checkpoint and settings, for one rank (module docstring).

    Args:
        cache_dir: Folder of the cache files (validated by :func:`check_cache_dir`).
        checkpoint_dir: The checkpoint directory whose files are fingerprinted.
        settings: JSON-serialisable settings that change answers besides the request (template,
            dtype, ...); any change gives other keys.
        rank: This process's rank.
        world_size: Number of processes of the run.

    Attributes:
        path: The SQLite file of this rank.
        checkpoint_fingerprint: SHA-256 of the checkpoint's files.
        model_key: SHA-256 of schema, version, fingerprint and settings (part of every key).
        hashed_files: Checkpoint files whose content was read when the fingerprint was computed
            (0 when every ``(path, size, mtime)`` was known).
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike,
        *,
        checkpoint_dir: str | os.PathLike,
        settings: Mapping[str, Any],
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        folder = check_cache_dir(cache_dir)
        self.path = folder / cache_file_name(rank, world_size)
        self.rank = rank
        self._connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S)
        with self._connection:
            self._connection.executescript(_SCHEMA)
        self.hashed_files = 0
        self.checkpoint_fingerprint = self._fingerprint(Path(checkpoint_dir))
        self.model_key = _sha256_text(
            _canonical(
                {
                    "schema": SCHEMA_VERSION,
                    "tg_llava_eval": __version__,
                    "checkpoint": self.checkpoint_fingerprint,
                    "settings": dict(settings),
                }
            )
        )
        #: Per request type: requests answered from the cache / sent to the engine, since the
        #: last :meth:`take_counts`.
        self._hits: Counter[str] = Counter()
        self._computed: Counter[str] = Counter()
        logger.info(
            "tg_llava response cache %s: checkpoint %s fingerprint %s (%d files hashed now), model key %s",
            self.path, checkpoint_dir, self.checkpoint_fingerprint[:16], self.hashed_files, self.model_key[:16],
        )

    # ------------------------------------------------------------------ fingerprint

    def _fingerprint(self, checkpoint_dir: Path) -> str:
        """SHA-256 over ``(relative path, size, content hash)`` of the checkpoint's files, with the
        content hashes taken from ``file_hashes`` when ``(path, size, mtime_ns)`` is unchanged."""
        entries = []
        for path in checkpoint_files(checkpoint_dir):
            resolved = path.resolve()
            stat = resolved.stat()
            row = self._connection.execute(
                "SELECT sha256 FROM file_hashes WHERE path = ? AND size = ? AND mtime_ns = ?",
                (str(resolved), stat.st_size, stat.st_mtime_ns),
            ).fetchone()
            if row is not None:
                sha = row[0]
            else:
                sha = file_sha256(resolved)
                self.hashed_files += 1
                with self._connection:
                    self._connection.execute(
                        "INSERT OR REPLACE INTO file_hashes (path, size, mtime_ns, sha256) VALUES (?, ?, ?, ?)",
                        (str(resolved), stat.st_size, stat.st_mtime_ns, sha),
                    )
            entries.append([path.relative_to(checkpoint_dir).as_posix(), stat.st_size, sha])
        if not entries:
            raise TGLlavaConfigError(f"checkpoint {str(checkpoint_dir)!r} has no files to fingerprint")
        return _sha256_text(_canonical(entries))

    # ------------------------------------------------------------------ keys and values

    def request_key(self, request_type: str, request: Request) -> str | None:
        """The key of one request, or ``None`` when an image cannot be read (such a request fails
        in the engine and is never stored).

        Args:
            request_type: The caller's name for the call (``generate_until``, ...).
            request: An engine request.
        """
        described: dict[str, Any] = {}
        for field in dataclasses.fields(request):
            if field.name in LABEL_FIELDS:
                continue
            value = getattr(request, field.name)
            if field.name == "images":
                value = [_image_key(image) for image in value]
                if any(key is None for key in value):
                    return None
            described[field.name] = value
        return _sha256_text(
            _canonical({"model": self.model_key, "type": request_type, "kind": type(request).__name__, "request": described})
        )

    # ------------------------------------------------------------------ lookup and store

    def answer(
        self,
        request_type: str,
        requests: Sequence[Request],
        compute: Callable[[list[Request]], list[ResultT]],
        result_type: type[ResultT],
    ) -> list[ResultT]:
        """Answer ``requests`` from the cache where possible and with ``compute`` otherwise.

        The answers ``compute`` gives (those without ``error``) are written in one transaction
        before this returns: one call is one atomic batch.

        Args:
            request_type: The caller's name for the call (part of the key).
            requests: Engine requests of one batch.
            compute: Runs the engine on the requests not in the cache, aligned results.
            result_type: :class:`GenerationResult` or :class:`LoglikelihoodResult`.

        Returns:
            One result per request, in order.
        """
        keys = [self.request_key(request_type, request) for request in requests]
        known = self._lookup([key for key in keys if key is not None])
        results: list[ResultT | None] = [
            _decode(result_type, known[key]) if key in known else None for key in keys
        ]
        missing = [index for index, result in enumerate(results) if result is None]
        self._hits[request_type] += len(requests) - len(missing)
        self._computed[request_type] += len(missing)
        logger.debug(
            "tg_llava response cache: %s batch of %d on rank %d: %d from the cache, %d to compute",
            request_type, len(requests), self.rank, len(requests) - len(missing), len(missing),
        )
        if missing:
            computed = compute([requests[index] for index in missing])
            if len(computed) != len(missing):
                raise RuntimeError(f"compute returned {len(computed)} results for {len(missing)} requests")
            rows = []
            for index, result in zip(missing, computed):
                results[index] = result
                if result.error is None and keys[index] is not None:
                    rows.append((keys[index], request_type, self.model_key, _encode(result)))
            with self._connection:  # one transaction: the batch is recorded whole or not at all
                self._connection.executemany(
                    "INSERT OR REPLACE INTO responses (key, request_type, model_key, response) VALUES (?, ?, ?, ?)",
                    rows,
                )
        return results  # type: ignore[return-value]

    def _lookup(self, keys: list[str]) -> dict[str, str]:
        """``key -> response JSON`` of the keys present."""
        found: dict[str, str] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), MAX_KEYS_PER_QUERY):
            chunk = unique[start : start + MAX_KEYS_PER_QUERY]
            placeholders = ",".join("?" * len(chunk))
            found.update(
                self._connection.execute(
                    f"SELECT key, response FROM responses WHERE key IN ({placeholders})", chunk
                ).fetchall()
            )
        return found

    def take_counts(self, request_type: str) -> tuple[int, int]:
        """``(from the cache, computed)`` requests of ``request_type`` since the last call; resets them."""
        return self._hits.pop(request_type, 0), self._computed.pop(request_type, 0)

    def __len__(self) -> int:
        """Number of stored answers (all models and settings)."""
        return self._connection.execute("SELECT count(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        """Close the SQLite connection (every batch is already committed)."""
        self._connection.close()


def _encode(result: GenerationResult | LoglikelihoodResult) -> str:
    """JSON of a successful result's fields (``error`` left out)."""
    fields = {k: v for k, v in dataclasses.asdict(result).items() if k not in UNSTORED_RESULT_FIELDS}
    return _canonical(fields)


def _decode(result_type: type[ResultT], text: str) -> ResultT:
    """A result rebuilt from :func:`_encode`'s JSON."""
    return result_type(**json.loads(text))


__all__ = [
    "ResponseCache",
    "check_cache_dir",
    "cache_file_name",
    "checkpoint_files",
    "file_sha256",
    "SCHEMA_VERSION",
    "BUSY_TIMEOUT_S",
]
