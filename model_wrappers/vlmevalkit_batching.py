"""Look-ahead batching for VLMEvalKit, whose inference loop asks the model for one row at a time.

VLMEvalKit's ``infer_data`` (``vlmeval/inference.py``, ms-vlmeval 0.0.20) walks the rows of this
rank's shard — ``dataset.data.iloc[range(rank, len(dataset), world_size)]`` minus the rows already
answered in an earlier run — and for each one builds a message (``dataset.build_prompt`` when the
dataset forces its own prompt, else ``model.build_prompt`` when ``model.use_custom_prompt(name)``,
else ``dataset.build_prompt``) and calls ``model.generate(message, dataset=name)``. Nothing in that
loop can be changed without editing VLMEvalKit, so batching happens on the model's side of the call:

1. Before the loop VLMEvalKit hands the model ``dataset.dump_image``; the bound method's owner is the
   dataset object, which :meth:`LookAhead.begin` keeps, with the shard this rank will walk.
2. When VLMEvalKit asks for a message that no earlier batch answered, the row it belongs to is
   *located* in the shard (from where the last batch left off, by building each row's message the
   way VLMEvalKit does and comparing), and a new batch starts there: that message plus the messages
   of the next ``batch_size - 1`` rows of the shard, answered by one call of ``answer_messages``.
3. The other answers are kept, keyed by their message's content, and handed out as VLMEvalKit asks
   for those messages. A row VLMEvalKit skips (answered in an earlier run: resume, ``--reuse``)
   simply is not asked for: its answer is dropped when the next batch starts.

Correctness never depends on step 2 finding the right row: an answer is only returned for a
message with exactly the same content as the one it was generated from, and batching does not
change an answer (the engine's guarantee), so the worst a wrong guess costs is wasted work. A
message that cannot be located (a caller other than ``infer_data``) is answered alone, and the
look-ahead is switched off for the rest of that dataset so the search is not repeated per row.

Costs: every looked-ahead row's message is built twice (here and by VLMEvalKit; ``dump_image``
finds the file it wrote the first time), plus one more build per batch to confirm where it starts.
Locating a resumed run's first row builds the messages of the rows before it once.

``batch_size=1`` does not use this module at all (the wrapper's per-row path).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from tg_llava_eval.inference.generation_settings import positive_int

logger = logging.getLogger(__name__)

#: Rows per model call in VLMEvalKit runs (``batch_size`` keyword, ``run.py --batch-size``); the one
#: home of the default. With 8 the tiny preset's loop runs ~3.8x the rows/s of batch 1 on CPU
#: (``bench/vlmevalkit_batching.py``, docs/vlmevalkit.md); the padded batch of LLaVA-1.5's short
#: prompts stays small next to 7B–13B weights (not yet measured on a GPU). 1 is the per-row path.
DEFAULT_BATCH_SIZE = 8

#: A message as VLMEvalKit passes it to ``generate`` (usually ``[{"type": ..., "value": ...}, ...]``).
Message = Any


def check_batch_size(value: Any, *, where: str = "TG-LLaVA (VLMEvalKit)") -> int:
    """``value`` as a batch size, or an error naming the argument.

    Args:
        value: The ``batch_size`` keyword or the ``--batch-size`` flag's value.
        where: Who passed it, for the message.

    Returns:
        The batch size (a positive int).

    Raises:
        TGLlavaConfigError: not a positive integer (``True``, ``0``, ``2.5`` are refused; ``"8"``
            is read as 8, as everywhere else: :func:`~tg_llava_eval.inference.generation_settings.positive_int`).
    """
    return positive_int(value, f"{where}: batch_size")


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What asking for one message gives: an answer, a row failure, or an exception to raise.

    Exactly one field is set. ``error`` is an exception the per-row path would have raised while
    answering this message (e.g. VLMEvalKit's own content assertions); it is raised when the message
    is asked for, never for a row VLMEvalKit has not reached.

    Attributes:
        text: The model's answer.
        failure: Why the row cannot be answered (becomes its ``Failed to obtain answer`` prediction).
        error: The exception.
    """

    text: str | None = None
    failure: str | None = None
    error: BaseException | None = None


@dataclasses.dataclass
class LoopStats:
    """Counters of one dataset's inference loop on this rank (logged at DEBUG, read by the bench).

    Attributes:
        dataset: The dataset name.
        started: ``time.perf_counter()`` when VLMEvalKit handed the dataset over.
        asked: Messages VLMEvalKit asked for.
        batches: Calls of ``answer_messages`` (one per batch; a row answered alone is a batch of 1).
        generated: Messages answered in those calls.
        dropped: Answers discarded because VLMEvalKit never asked for them.
        model_s: Seconds spent inside ``answer_messages`` (preparing requests and the engine).
    """

    dataset: str | None
    started: float = dataclasses.field(default_factory=time.perf_counter)
    asked: int = 0
    batches: int = 0
    generated: int = 0
    dropped: int = 0
    model_s: float = 0.0

    def describe(self) -> str:
        """One log line: ``TG-LLaVA timing: <dataset>: ... s in the model, ... s since the dataset began``."""
        return (
            f"TG-LLaVA timing: {self.dataset}: {self.asked} rows asked, {self.batches} batches, {self.generated} "
            f"rows generated, {self.dropped} answers dropped; {self.model_s:.4f} s in the model, "
            f"{time.perf_counter() - self.started:.4f} s since the dataset began"
        )


def message_key(message: Message) -> str:
    """A canonical text of a message's content: two messages are the same question iff keys are equal.

    Computed before VLMEvalKit's ``preproc_content`` (which rewrites values in place), on the message
    exactly as ``build_prompt`` returned it.
    """
    return json.dumps(message, sort_keys=True, ensure_ascii=False, default=repr)


def shard_positions(length: int) -> list[int]:
    """Row positions of this rank's shard, in VLMEvalKit's order (``range(rank, length, world_size)``).

    Rank and world size are read as VLMEvalKit reads them (``RANK``/``WORLD_SIZE``, at call time).
    """
    from vlmeval.smp import get_rank_and_world_size

    rank, world_size = get_rank_and_world_size()
    return list(range(rank, length, world_size))


def build_row_message(model: Any, dataset: Any, row: Any) -> Message:
    """The message VLMEvalKit's ``infer_data`` builds for ``row`` (the same three-way choice).

    Args:
        model: The VLMEvalKit model (``use_custom_prompt``/``build_prompt``).
        dataset: The dataset object (``build_prompt``, ``dataset_name``, ``force_use_dataset_prompt``).
        row: One row of ``dataset.data`` (a ``pandas.Series``).
    """
    if getattr(dataset, "force_use_dataset_prompt", False):
        return dataset.build_prompt(row)
    if model.use_custom_prompt(dataset.dataset_name):
        return model.build_prompt(row, dataset=dataset.dataset_name)
    return dataset.build_prompt(row)


class LookAhead:
    """Answers VLMEvalKit's per-row ``generate`` calls from batches of the rows that follow.

    Args:
        batch_size: Rows per batch (> 1; the wrapper does not build a ``LookAhead`` for 1).
        build_message: ``(dataset, row) -> message``, as VLMEvalKit builds it (:func:`build_row_message`
            bound to the model).
        answer_messages: ``(messages, dataset_name) -> [Outcome, ...]`` aligned with ``messages``;
            answers them together (the wrapper: one engine call, per-row failures kept apart).
    """

    def __init__(self, batch_size: int, build_message: Callable[[Any, Any], Message],
                 answer_messages: Callable[[Sequence[Message], str | None], list[Outcome]]) -> None:
        self.batch_size = check_batch_size(batch_size)
        self._build_message = build_message
        self._answer_messages = answer_messages
        self._dataset: Any = None
        self._positions: list[int] = []
        self._cursor = 0  # index into _positions of the row after the last one answered
        self._located = True  # False once a message could not be found in this dataset's shard
        self._cache: dict[str, collections.deque[tuple[int, Outcome]]] = {}
        self.stats = LoopStats(None)

    def begin(self, dataset: Any) -> None:
        """Start a dataset: VLMEvalKit is about to walk this rank's shard of ``dataset``.

        Args:
            dataset: The dataset object (the owner of the ``dump_image`` VLMEvalKit handed over), or
                ``None`` when there is none: every message is then answered alone.
        """
        self._drop_cache()
        name = getattr(dataset, "dataset_name", None)
        usable = dataset is not None and hasattr(dataset, "data") and hasattr(dataset, "build_prompt")
        self._dataset = dataset if usable else None
        self._positions = shard_positions(len(dataset)) if usable else []
        self._cursor = 0
        self._located = True
        self.stats = LoopStats(name)

    def answer(self, message: Message, dataset_name: str | None) -> Outcome:
        """The outcome of one ``generate(message, dataset_name)`` call.

        Args:
            message: The message VLMEvalKit passes (before ``preproc_content``).
            dataset_name: The ``dataset`` argument VLMEvalKit passes.

        Returns:
            The cached outcome when an earlier batch answered this message, else the outcome from a
            new batch that starts at this message's row.
        """
        self.stats.asked += 1
        key = message_key(message)
        queue = self._cache.get(key)
        if queue:
            position, outcome = queue.popleft()
            self._cursor = position + 1
            return outcome
        self._drop_cache()
        position = self._locate(key, dataset_name)
        if position is None:
            return self._run([message], dataset_name)[0]
        batch, keys = [message], [key]
        for follower in range(position + 1, min(position + self.batch_size, len(self._positions))):
            built = self._message_at(follower)
            if built is None:  # VLMEvalKit fails on this row itself; the batch stops before it
                break
            batch.append(built)
            keys.append(message_key(built))
        outcomes = self._run(batch, dataset_name)
        for offset, (follower_key, outcome) in enumerate(zip(keys[1:], outcomes[1:]), start=1):
            self._cache.setdefault(follower_key, collections.deque()).append((position + offset, outcome))
        self._cursor = position + 1
        return outcomes[0]

    # ------------------------------------------------------------------------------------------
    def _locate(self, key: str, dataset_name: str | None) -> int | None:
        """Shard index of the row whose message has ``key``, searching forward from the cursor.

        ``None`` (and the look-ahead off for this dataset, logged) when no handed-over dataset matches
        ``dataset_name`` or no row from the cursor on builds this message.
        """
        if self._dataset is None or not self._located or self._dataset.dataset_name != dataset_name:
            return None
        for index in range(self._cursor, len(self._positions)):
            built = self._message_at(index)
            if built is not None and message_key(built) == key:
                if index > self._cursor:
                    logger.debug("TG-LLaVA look-ahead: %s resumes at shard row %d (%d rows skipped)",
                                 dataset_name, index, index - self._cursor)
                return index
        self._located = False
        logger.info("TG-LLaVA look-ahead: a message of %s matches no row of this rank's shard from row %d on; "
                    "the rest of %s is answered row by row", dataset_name, self._cursor, dataset_name)
        return None

    def _message_at(self, index: int) -> Message | None:
        """The message of shard row ``index``, or ``None`` when building it raises.

        A row whose prompt cannot be built is VLMEvalKit's business: it raises on that row itself when
        it gets there (as without batching), so the exception is only logged here.
        """
        row = self._dataset.data.iloc[self._positions[index]]
        try:
            return self._build_message(self._dataset, row)
        except Exception as err:  # noqa: BLE001 - VLMEvalKit raises it itself for this row
            logger.debug("TG-LLaVA look-ahead: row %s of %s not prefetched (%s: %s)",
                         row.get("index", index), self._dataset.dataset_name, type(err).__name__, err)
            return None

    def _run(self, messages: Sequence[Message], dataset_name: str | None) -> list[Outcome]:
        """One ``answer_messages`` call, timed and counted."""
        start = time.perf_counter()
        outcomes = self._answer_messages(messages, dataset_name)
        self.stats.model_s += time.perf_counter() - start
        self.stats.batches += 1
        self.stats.generated += len(messages)
        return outcomes

    def _drop_cache(self) -> None:
        """Forget the answers VLMEvalKit did not ask for (the rows it skipped)."""
        self.stats.dropped += sum(len(queue) for queue in self._cache.values())
        self._cache.clear()


def generate_together(engine: Any, requests: Sequence[Any]) -> list[Any]:
    """Answer ``requests`` in one engine call; if that call raises, each one alone.

    The engine already isolates bad *inputs* (a result with ``error`` set). This covers a failure
    of the batched model call itself (e.g. out of memory at the batch's padded length): the rows are
    then generated one by one, exactly as without batching, and a row that still raises gets its
    exception in its slot (the wrapper raises it when VLMEvalKit asks for that row).

    Args:
        engine: A :class:`tg_llava_eval.inference.TGLlavaEngine`.
        requests: Its ``GenerationRequest`` records.

    Returns:
        Per request, a ``GenerationResult`` or the exception its own call raised.
    """
    if not requests:
        return []
    try:
        return list(engine.generate(list(requests), batch_size=len(requests)))
    except Exception as err:  # noqa: BLE001 - retried row by row; each row's own error is kept
        if len(requests) == 1:
            return [err]
        logger.warning("TG-LLaVA: a batch of %d rows failed (%s: %s); answering them one at a time",
                       len(requests), type(err).__name__, err)
    results: list[Any] = []
    for request in requests:
        try:
            results.append(engine.generate([request])[0])
        except Exception as err:  # noqa: BLE001 - raised when VLMEvalKit asks for this row
            results.append(err)
    return results
