"""VLMEvalKit adapter: the ``TGLLaVA`` model class, its named presets and :func:`register`.

VLMEvalKit (``ms-vlmeval``, module ``vlmeval``) has no plugin mechanism: a model is whatever
``vlmeval.config.supported_VLM[name](**kwargs)`` builds. :func:`register` therefore adds our presets
to that dict *in place* (every VLMEvalKit module holds the same dict object) and exposes the class
as ``vlmeval.vlm.TGLLaVA`` so a ``--config`` JSON entry may say ``"class": "TGLLaVA"``. No
VLMEvalKit file is edited or replaced (the official TG-LLaVA release replaced ``llava.py``).

What the class does, and deliberately does not do:

* **Prompts are LLaVA-1.5's.** ``use_custom_prompt`` and ``build_prompt`` are exactly those of
  VLMEvalKit's ``vlmeval.vlm.LLaVA`` (``build_prompt`` *calls* that installed method): MCQ rows get
  "hint + question + ``X. option`` lines + *Answer with the option's letter from the given choices
  directly.*"; every other dataset type (Y/N, VQA, captioning) uses the dataset's own prompt. One
  difference: LLaVA-1.5 types a dataset by its name (``DATASET_TYPE``, ``MCQ`` for every name it
  does not know); we prefer the ``TYPE`` of the dataset object VLMEvalKit hands over
  (:meth:`TGLLaVA.set_dump_image`), so a local Y/N set run with ``ImageYORNDataset`` keeps its own
  prompt instead of getting LLaVA's "*Answer the question directly.*" suffix.
* **No preprocessing here.** The user text and the image path go to
  :class:`tg_llava_eval.inference.TGLlavaEngine`, which applies the variant's conversation template
  (``vicuna_v1`` / ``llama_3`` / ``qwen_2``, from the checkpoint's config), derives the text guide
  (the user text without image markers, cut to the guide tower's 77 CLIP positions), pads, crops and
  caches the frozen vision tower's features (on by default: MMBench circular passes, MME pairs and
  POPE re-use images).
* **Image position.** An image that opens the message (all of VLMEvalKit's image prompts) becomes
  the official ``<image>\\n`` prefix; an image in the middle of the text keeps its place as a
  marker. LLaVA-1.5's wrapper instead writes ``" <image> "`` inline and its fixed Vicuna system
  prompt; ours uses the variant's template, as the official TG-LLaVA runner does.
* **One image.** TG-LLaVA's text-guided modules are defined for one image. A row with several images
  (some MMMU/BLINK rows) is *rejected*: its prediction records a clear failure instead of an answer.
* **Bad rows never stop a run.** A missing or undecodable image, an empty question, a prompt longer
  than the model's context, ...: the row's prediction becomes
  ``"Failed to obtain answer: [TG-LLaVA] <reason>"`` (VLMEvalKit's own failure marker, so its run
  report counts it as an inference failure and exact matching scores it as a miss), a warning with
  the running count of failed rows is logged, and the next row runs. Failures are deterministic, so
  a resumed run keeps them instead of re-inferring them (VLMEvalKit only retries API failures).
* **Generation** follows VLMEvalKit's LLaVA-1.5 wrapper, which uses one setting for every dataset:
  greedy decoding, ``max_new_tokens=2048``, one beam. A preset (or ``run.py``'s handling of
  VLMEvalKit's ``--max-tokens`` / ``--temperature`` / ``--top-p``) may override them.
* **Batches, though VLMEvalKit asks row by row.** With ``batch_size > 1`` (default
  :data:`~.vlmevalkit_batching.DEFAULT_BATCH_SIZE`) a row VLMEvalKit asks for starts a batch with
  the next rows of this rank's shard, their messages built exactly as VLMEvalKit builds them, and
  the other answers are handed out as VLMEvalKit asks for them (:mod:`.vlmevalkit_batching`). A bad
  row in a batch fails alone; ``batch_size=1`` is the per-row path.

Presets (:data:`PRESETS`) carry no weights: the paper variants need a checkpoint directory
(``run.py --model-path DIR`` or ``"model_path"`` in a ``--config`` entry). ``tg_llava`` accepts any
TG-LLaVA checkpoint and reads its variant from ``--variant`` or, failing that, recognises it from the
checkpoint's config.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import UnidentifiedImageError
from vlmeval.smp.file import INFER_FAIL_MSG
from vlmeval.vlm.base import BaseModel
from vlmeval.vlm.llava.llava import LLaVA

from tg_llava_eval.errors import TGLlavaConfigError, TGLlavaInputError
from tg_llava_eval.inference.generation_settings import GENERATION_KEYS, GenerationSettings
from tg_llava_eval.inference.requests import GenerationRequest
from tg_llava_eval.model_wrappers.vlmevalkit_batching import (
    DEFAULT_BATCH_SIZE,
    LookAhead,
    LoopStats,
    Outcome,
    build_row_message,
    check_batch_size,
    generate_together,
)
from tg_llava_eval.model_wrappers.vlmevalkit_install import VLMEvalKitInstall, locate_vlmevalkit
from tg_llava_eval.results.manifest import RunManifest, build_run_manifest
from tg_llava_eval.variants import IDENTITY_FIELDS, VARIANTS, check_variant, get_variant, recognise_variant

logger = logging.getLogger(__name__)

#: Name of the class attribute set on ``vlmeval.vlm`` so that ``--config`` can say ``"class": "TGLLaVA"``.
CLASS_NAME = "TGLLaVA"
#: Prefix of every failed row's prediction. It contains VLMEvalKit's ``INFER_FAIL_MSG``
#: ("Failed to obtain answer"), which its run report counts as an inference failure.
FAILURE_PREFIX = f"{INFER_FAIL_MSG}: [TG-LLaVA] "
#: Vision-cache capacity in images. It is sized for MMBench, whose circular copies of a question sit
#: far from the original in the TSV: an LRU smaller than that reuse distance never hits. The engine
#: keeps entries on the host; at the real sizes one is ~5.9 MB in bf16 (576 patch + 4 x 576 crop
#: features of width 1024), ~12 GB when full. Lower it with ``cache_size`` in a ``--config`` entry.
DEFAULT_CACHE_SIZE = 2048
#: Message item types VLMEvalKit may send (``BaseModel.allowed_types``).
_IMAGE, _TEXT, _VIDEO = "image", "text", "video"
#: Prefixes of image values that are not local files (``BaseModel.preproc_content`` resolves them).
_NON_FILE_IMAGE_PREFIXES = ("data:image/", "http://", "https://")


#: VLMEvalKit's LLaVA-1.5 wrapper (``vlmeval/vlm/llava/llava.py``, ``LLaVA.__init__``): ``do_sample=False,
#: temperature=0, max_new_tokens=2048, top_p=None, num_beams=1`` for every dataset.
LLAVA15_GENERATION = GenerationSettings(max_new_tokens=2048, temperature=0.0, top_p=None, num_beams=1)


#: The decoding keywords of VLMEvalKit's LLaVA-1.5 wrapper (no stop strings there).
_LLAVA_GENERATION_KEYS = tuple(key for key in GENERATION_KEYS if key != "until")


def generation_from_keywords(keywords: Mapping[str, Any]) -> GenerationSettings:
    """Decoding settings from LLaVA-1.5-style keywords (``--config`` entries, ``run.py`` flags).

    ``do_sample`` defaults to false, as in VLMEvalKit's LLaVA wrapper: a temperature alone stays
    greedy. Everything else is the project's one rule (:class:`GenerationSettings`).

    Raises:
        TGLlavaConfigError: a bad value or an unknown key, naming the key.
    """
    unknown = sorted(set(keywords) - set(_LLAVA_GENERATION_KEYS))
    if unknown:
        raise TGLlavaConfigError(f"TG-LLaVA (VLMEvalKit): unknown decoding keyword(s) {unknown}; known: {list(_LLAVA_GENERATION_KEYS)}")
    return GenerationSettings.from_kwargs(
        {"do_sample": False, **keywords}, where="TG-LLaVA (VLMEvalKit)", defaults=LLAVA15_GENERATION
    )


@dataclasses.dataclass(frozen=True)
class Preset:
    """A name under which VLMEvalKit's ``--model`` finds a TG-LLaVA configuration.

    Attributes:
        name: The key in ``vlmeval.config.supported_VLM`` (and the output folder name).
        variant: The ``tg_llava_eval.variants`` name the checkpoint must match; ``None`` for the
            generic ``tg_llava`` preset (variant from ``--variant`` or recognised from the config).
        description: One line for ``run.py --help`` and the docs.
    """

    name: str
    variant: str | None
    description: str

    def keywords(self) -> dict[str, Any]:
        """Constructor keywords of :class:`TGLLaVA` that this preset fixes."""
        return {} if self.variant is None else {"variant": self.variant}


#: The generic preset: any checkpoint given by ``--model-path``, its variant from ``--variant`` or
#: recognised from its config.
GENERIC_PRESET = Preset("tg_llava", None, "any TG-LLaVA checkpoint given by --model-path (variant from --variant or its config)")


def _presets() -> tuple[Preset, ...]:
    """The generic preset, then one per catalogue variant with a VLMEvalKit name: the paper's three
    LLMs, the LLaVA-1.5 baselines built by the same code and the two ablations of each."""
    named = (Preset(v.vlmevalkit_name, v.name, v.description) for v in VARIANTS.values() if v.vlmevalkit_name)
    return (GENERIC_PRESET, *named)


#: Every preset :func:`register` installs.
PRESETS: tuple[Preset, ...] = _presets()
PRESETS_BY_NAME: dict[str, Preset] = {preset.name: preset for preset in PRESETS}


def resolve_variant(config: Any, requested: str | None, *, source: str) -> str | None:
    """The variant a checkpoint is evaluated as: the requested one (checked) or the recognised one.

    Args:
        config: The checkpoint's ``TGLlavaConfig``.
        requested: A preset's or the user's variant name, or ``None``.
        source: The checkpoint path, for messages.

    Returns:
        The variant name, or ``None`` for a checkpoint that matches no known variant (logged).

    Raises:
        TGLlavaConfigError: the checkpoint does not match the requested variant (names the fields).
    """
    if requested is None:
        recognised = recognise_variant(config)
        if recognised is None:
            logger.warning("%s matches no known TG-LLaVA variant on %s; it is evaluated as a custom model "
                           "(pass --variant NAME to record one)", source, ", ".join(IDENTITY_FIELDS))
        return recognised
    check_variant(config, requested, source=source)
    return requested


def failure_text(reason: str) -> str:
    """The prediction recorded for a row that could not be answered.

    Args:
        reason: What went wrong, naming the input (image path, row index, lengths).

    Returns:
        ``"Failed to obtain answer: [TG-LLaVA] <reason>"``.
    """
    return FAILURE_PREFIX + " ".join(str(reason).split())


def is_failure(prediction: Any) -> bool:
    """Whether a prediction cell records a TG-LLaVA row failure (see :func:`failure_text`)."""
    return str(prediction).startswith(FAILURE_PREFIX)


class TGLLaVA(BaseModel):
    """TG-LLaVA as a VLMEvalKit model (one image per question, LLaVA-1.5 prompts).

    Args:
        model_path: A checkpoint directory written by ``tg-llava-eval create``/training/``convert``
            (or a hub id the engine can load). Required: presets ship no weights.
        variant: The variant the checkpoint must be (``tg_llava_eval.variants``); ``None`` = recognise
            it from the checkpoint's config (or evaluate it as a custom model).
        dtype: Weights dtype for the engine (``"auto"`` = the checkpoint's).
        device: Device for the engine; ``None`` = this rank's own device (:func:`rank_device`).
        cache_vision: Cache the frozen vision tower's features by image content (default on).
        cache_size: Number of images the cache keeps (LRU).
        max_new_tokens / temperature / top_p / num_beams: Decoding; defaults are VLMEvalKit's
            LLaVA-1.5 settings (:data:`LLAVA15_GENERATION`).
        do_sample: LLaVA-1.5's keyword: ``False`` (default) forces greedy decoding whatever the
            temperature; ``True`` samples (at temperature 1 when none is given).
        batch_size: Rows per model call (look-ahead over this rank's shard, :mod:`.vlmevalkit_batching`);
            1 = one call per row, as VLMEvalKit asks. Answers do not depend on it.

    Raises:
        TGLlavaConfigError: no ``model_path``, a path that is not a checkpoint directory, a
            checkpoint that is not the requested variant, invalid decoding settings or batch size.
    """

    INSTALL_REQ = False
    INTERLEAVE = False
    #: The image marker; replaced by the checkpoint's ``config.image_token`` once loaded.
    image_token = "<image>"

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        variant: str | None = None,
        *,
        dtype: str = "auto",
        device: str | None = None,
        cache_vision: bool = True,
        cache_size: int = DEFAULT_CACHE_SIZE,
        max_new_tokens: int = LLAVA15_GENERATION.max_new_tokens,
        temperature: float = LLAVA15_GENERATION.temperature,
        top_p: float | None = LLAVA15_GENERATION.top_p,
        num_beams: int = LLAVA15_GENERATION.num_beams,
        do_sample: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        super().__init__()
        self._reset_state(generation_from_keywords(dict(  # fail fast
            max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, num_beams=num_beams, do_sample=do_sample,
        )), batch_size=check_batch_size(batch_size))
        if model_path is None:
            raise TGLlavaConfigError(
                "TG-LLaVA presets ship no weights: give a checkpoint with run.py --model-path DIR "
                "(or \"model_path\" in the --config entry)"
            )
        path = Path(model_path)
        if path.exists() and not (path / "config.json").is_file():
            raise TGLlavaConfigError(f"model_path {str(path)!r} is not a checkpoint directory (no config.json)")
        from tg_llava_eval.inference import TGLlavaEngine

        self.model_path = str(path)
        self.engine = TGLlavaEngine.from_pretrained(
            self.model_path, dtype=dtype, device=device or rank_device(), cache_vision=cache_vision,
            cache_size=cache_size,
        )
        self.variant = resolve_variant(self.engine.model.config, variant, source=self.model_path)
        self.image_token = self.engine.model.config.image_token
        logger.info(
            "TG-LLaVA loaded from %s (variant %s, template %s, device %s, vision cache %s, batch size %d, %s)",
            self.model_path, self.variant or "custom", self.engine.template, self.engine.device,
            "on" if cache_vision else "off", self.batch_size, self.generation,
        )

    @classmethod
    def without_engine(cls, **generation: Any) -> TGLLaVA:
        """An instance with the prompt hooks and request building but no model.

        For checks that need no weights (prompt parity, dry runs); :meth:`generate_inner` on it
        raises :class:`TGLlavaConfigError`.

        Args:
            **generation: Decoding keywords as for the constructor (``max_new_tokens``, ...).
        """
        self = cls.__new__(cls)
        BaseModel.__init__(self)
        self._reset_state(generation_from_keywords(generation))
        return self

    def _reset_state(self, generation: GenerationSettings, batch_size: int = 1) -> None:
        """Per-instance bookkeeping shared by both constructors."""
        self.generation = generation
        self.batch_size = batch_size
        # The look-ahead exists only for batch_size > 1; batch_size 1 keeps the per-row path.
        self._look_ahead = (LookAhead(batch_size, functools.partial(build_row_message, self), self._answer_messages)
                            if batch_size > 1 else None)
        self._row_stats = LoopStats(None)  # the per-row path's counters (the look-ahead keeps its own)
        self.engine = None
        self.model_path = None
        self.variant = None
        self._pending_failures: dict[str, str] = {}
        self._dataset_types: dict[str, str] = {}
        self._calls: Counter[str] = Counter()
        self._failures: Counter[str] = Counter()

    # ----------------------------------------------------------------------------------------------
    # Prompt hooks (VLMEvalKit calls them per row): exactly LLaVA-1.5's.
    # ----------------------------------------------------------------------------------------------
    def set_dump_image(self, dump_image_func: Any) -> None:
        """VLMEvalKit hands over each dataset's ``dump_image`` before inferring it; the dataset object
        that owns it tells the dataset's type (``TYPE``), which :meth:`use_custom_prompt` prefers to
        the name (a local Y/N set run through ``--config`` with ``ImageYORNDataset`` has a name that
        ``DATASET_TYPE`` cannot place, and would otherwise get the MCQ prompt path)."""
        super().set_dump_image(dump_image_func)
        owner = getattr(dump_image_func, "__self__", None)
        name, kind = getattr(owner, "dataset_name", None), getattr(owner, "TYPE", None)
        if isinstance(name, str) and isinstance(kind, str):
            self._dataset_types[name] = kind
        # A new dataset's loop starts: the look-ahead walks the owner's rows (this rank's shard).
        self._pending_failures.clear()
        self._row_stats = LoopStats(name if isinstance(name, str) else None)
        if self._look_ahead is not None:
            self._look_ahead.begin(owner)

    def use_custom_prompt(self, dataset: str) -> bool:
        """True for MCQ datasets (LLaVA-1.5's rule), so ``build_prompt`` runs.

        The type is the dataset object's ``TYPE`` when VLMEvalKit has handed that dataset over
        (:meth:`set_dump_image`), else ``DATASET_TYPE(name)`` as in LLaVA-1.5's wrapper; the two
        agree on every dataset VLMEvalKit knows by name.

        Args:
            dataset: The dataset name VLMEvalKit passes (``--data`` value or config key).
        """
        if dataset in self._dataset_types:
            return self._dataset_types[dataset] == "MCQ"
        return LLaVA.use_custom_prompt(self, dataset)

    def build_prompt(self, line: pd.Series, dataset: str | None = None) -> list[dict[str, str]]:
        """LLaVA-1.5's MCQ prompt for one row, or a recorded failure for a row that cannot be asked.

        The prompt is built by VLMEvalKit's own ``LLaVA.build_prompt`` (images first, then
        "hint\\nquestion\\nA. ...\\nAnswer with the option's letter from the given choices
        directly."). Two problems are caught here because they surface while building: an empty
        question and an image cell VLMEvalKit cannot decode into a file.

        Args:
            line: One row of the dataset's TSV (``image`` still base64, or ``image_path``).
            dataset: The dataset name.

        Returns:
            A VLMEvalKit message: ``[{"type": "image", "value": path}, ..., {"type": "text", "value": prompt}]``.
            A failed row gets a one-item text message that :meth:`generate_inner` turns into the
            row's failure text.
        """
        where = f"row {line.get('index', '?')} of {dataset}"
        question = line.get("question")
        if question is None or pd.isna(question) or not str(question).strip():
            return self._defer_failure(f"{where}: the question is empty")
        try:
            return LLaVA.build_prompt(self, line, dataset)
        except UnidentifiedImageError:  # its message only names an in-memory buffer
            return self._defer_failure(f"{where}: its image cannot be decoded (the data is not an image file PIL can read)")
        except (OSError, ValueError) as err:  # truncated image data, bad base64 (binascii.Error is a ValueError)
            return self._defer_failure(f"{where}: its image cannot be decoded ({type(err).__name__}: {err})")

    def _defer_failure(self, reason: str) -> list[dict[str, str]]:
        """A placeholder message for a row that failed while its prompt was built.

        VLMEvalKit calls ``build_prompt`` then ``generate`` for the same row, and ``build_prompt``
        must return a message; the placeholder's key carries the reason over. The key is derived
        from the reason (which names the row), so the look-ahead, building the same row's prompt,
        gets the same placeholder as VLMEvalKit does.
        """
        key = f"<tg_llava row failure {hashlib.sha256(reason.encode('utf-8')).hexdigest()}>"
        self._pending_failures[key] = reason
        return [{"type": _TEXT, "value": key}]

    # ----------------------------------------------------------------------------------------------
    # Generation
    # ----------------------------------------------------------------------------------------------
    def generate(self, message: Any, dataset: str | None = None) -> str:
        """VLMEvalKit's entry point (once per row): the answer from a look-ahead batch, or the row alone.

        With ``batch_size > 1`` the answer comes from :class:`~.vlmevalkit_batching.LookAhead` (a
        batch starting at this row, or one an earlier row started). Either way a local image file
        that does not exist fails the row (``BaseModel.generate`` would assert on it, aborting the
        whole dataset). Each call is logged at DEBUG (``run.py --verbose``), which is how the resume
        test counts model calls, followed by the loop's ``TG-LLaVA timing`` line (the bench reads it).

        Args:
            message: Any message form VLMEvalKit accepts (usually a list of ``{type, value}``).
            dataset: The dataset name.

        Returns:
            The answer or the row's failure text.
        """
        self._calls[dataset] += 1
        logger.debug("TG-LLaVA generate: %s call %d", dataset, self._calls[dataset])
        if self._look_ahead is not None:
            answer = self._resolve(self._look_ahead.answer(message, dataset), dataset)
        else:
            answer = self._generate_alone(message, dataset)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s", self.loop_stats.describe())
        return answer

    @property
    def loop_stats(self) -> LoopStats:
        """Counters and times of the current dataset's loop (``TG-LLaVA timing`` DEBUG lines)."""
        return self._look_ahead.stats if self._look_ahead is not None else self._row_stats

    def _generate_alone(self, message: Any, dataset: str | None) -> str:
        """The per-row path (``batch_size=1``): the missing-file check, then ``BaseModel.generate``."""
        stats = self._row_stats
        stats.asked += 1
        missing = _missing_image(message)
        if missing is not None:
            return self._fail(missing, dataset)
        start = time.perf_counter()
        try:
            return super().generate(message, dataset)
        finally:
            stats.model_s += time.perf_counter() - start
            stats.batches += 1
            stats.generated += 1

    def _resolve(self, outcome: Outcome, dataset: str | None) -> str:
        """The text VLMEvalKit gets for an :class:`Outcome` (a failure is counted and logged now,
        when VLMEvalKit asks for the row; an exception is raised now)."""
        if outcome.error is not None:
            raise outcome.error
        if outcome.failure is not None:
            return self._fail(outcome.failure, dataset)
        return outcome.text

    def _answer_messages(self, messages: Sequence[Any], dataset: str | None) -> list[Outcome]:
        """Answer several rows' messages with one engine call (the look-ahead's ``answer_messages``).

        Each message goes through what the per-row path does before the engine (missing-file check,
        ``BaseModel.generate``'s checks, a failure deferred by :meth:`build_prompt`,
        :meth:`build_request`); a row that fails there, or whose request the engine rejects, fails
        alone, and the others are generated together (:func:`generate_together`).

        Args:
            messages: VLMEvalKit messages, the asked row's first.
            dataset: The dataset name.

        Returns:
            One :class:`Outcome` per message, aligned.
        """
        outcomes: list[Outcome | None] = [None] * len(messages)
        pending: list[tuple[int, GenerationRequest]] = []
        for slot, message in enumerate(messages):
            try:
                prepared = self._prepare_message(message, dataset)
            except Exception as err:  # noqa: BLE001 - the per-row path raises it; so does _resolve
                outcomes[slot] = Outcome(error=err)
                continue
            if isinstance(prepared, GenerationRequest):
                pending.append((slot, prepared))
            else:
                outcomes[slot] = Outcome(failure=prepared)
        results = generate_together(self._engine(), [request for _, request in pending]) if pending else []
        for (slot, _), result in zip(pending, results):
            if isinstance(result, BaseException):
                outcomes[slot] = Outcome(error=result)
            elif result.error is not None:
                outcomes[slot] = Outcome(failure=result.error)
            else:
                outcomes[slot] = Outcome(text=result.text)
        return outcomes  # type: ignore[return-value]

    def _prepare_message(self, message: Any, dataset: str | None) -> GenerationRequest | str:
        """The engine request of one message, or the reason its row fails (the per-row path's steps).

        Raises:
            AssertionError: VLMEvalKit's own checks of the message (``BaseModel.generate``).
        """
        missing = _missing_image(message)
        if missing is not None:
            return missing
        # BaseModel.generate's checks and preprocessing, without its call of generate_inner.
        assert self.check_content(message) in ["str", "dict", "liststr", "listdict"], f"Invalid input type: {message}"
        message = self.preproc_content(message)
        assert message is not None and self.check_content(message) == "listdict"
        for item in message:
            assert item["type"] in self.allowed_types, f"Invalid input type: {item['type']}"
        if len(message) == 1 and message[0].get("value") in self._pending_failures:
            return self._pending_failures[message[0]["value"]]
        try:
            return self.build_request(message, dataset)
        except TGLlavaInputError as err:
            return str(err)

    def generate_inner(self, message: list[dict[str, str]], dataset: str | None = None) -> str:
        """Answer one row.

        Args:
            message: ``[{"type": "image"|"text", "value": ...}, ...]`` (image values are file paths).
            dataset: The dataset name (log lines and the engine's ``request_id``).

        Returns:
            The model's answer, or :func:`failure_text` of the reason the row could not be answered.
        """
        if len(message) == 1 and message[0].get("value") in self._pending_failures:
            return self._fail(self._pending_failures.pop(message[0]["value"]), dataset)
        try:
            request = self.build_request(message, dataset)
        except TGLlavaInputError as err:
            return self._fail(str(err), dataset)
        return self._answer(request, dataset)

    def chat_inner(self, message: list[dict[str, Any]], dataset: str | None = None) -> str:
        """Multi-turn datasets (``TYPE == "MT"``): earlier turns become the request's history.

        Args:
            message: ``[{"role": "user"|"assistant", "content": [items]}, ...]``, ending with a user turn.
            dataset: The dataset name.

        Returns:
            The answer to the last user turn, or a failure text.
        """
        self._calls[dataset] += 1
        try:
            request = self.build_chat_request(message, dataset)
        except TGLlavaInputError as err:
            return self._fail(str(err), dataset)
        return self._answer(request, dataset)

    def _answer(self, request: GenerationRequest, dataset: str | None) -> str:
        """Run one request through the engine: its answer, or the failure text of its error."""
        result = self._engine().generate([request])[0]
        if result.error is not None:
            return self._fail(result.error, dataset)
        return result.text

    def build_request(self, message: Sequence[Mapping[str, str]], dataset: str | None = None) -> GenerationRequest:
        """Turn a VLMEvalKit message into an engine request (no tensors, no templates).

        Text items are concatenated as LLaVA-1.5's ``concat_tilist`` does (no separator). A leading
        image is left to the engine, which prefixes the official ``<image>\\n``; an image after some
        text is kept in place as the ``<image>`` marker. The guide text is left to the engine
        (``guide_text=None``): the user text with markers removed, cut to 77 CLIP tokens.

        Args:
            message: The row's message.
            dataset: The dataset name; with the image's file name it forms the ``request_id`` that
                the engine's error messages start with (VLMEvalKit dumps row images as ``<index>.png``).

        Returns:
            A :class:`GenerationRequest` with this instance's decoding settings.

        Raises:
            TGLlavaInputError: more than one image, or a video item.
        """
        prompt, images = self._user_turn(message)
        return GenerationRequest(
            prompt=prompt,
            images=tuple(images),
            guide_text=None,
            max_new_tokens=self.generation.max_new_tokens,
            temperature=self.generation.temperature,
            top_p=self.generation.top_p,
            num_beams=self.generation.num_beams,
            request_id=_request_id(dataset, images),
        )

    def build_chat_request(self, turns: Sequence[Mapping[str, Any]], dataset: str | None = None) -> GenerationRequest:
        """Like :meth:`build_request` for a multi-turn conversation; the image must be in the first turn.

        Raises:
            TGLlavaInputError: roles do not alternate user/assistant ending with user, more than one
                image, or an image after the first turn.
        """
        texts, images = [], []
        for position, turn in enumerate(turns):
            expected = "user" if position % 2 == 0 else "assistant"
            if turn.get("role") != expected:
                raise TGLlavaInputError(f"turn {position} has role {turn.get('role')!r}, expected {expected!r}")
            text, turn_images = self._user_turn(turn["content"])
            if turn_images and position != 0:
                raise TGLlavaInputError(f"turn {position} carries an image; TG-LLaVA takes the image in the first turn only")
            texts.append(text)
            images.extend(turn_images)
        if len(texts) % 2 == 0:
            raise TGLlavaInputError("the conversation must end with a user turn")
        if len(images) > 1:
            raise TGLlavaInputError(f"TG-LLaVA is a single-image model; this conversation has {len(images)} images")
        history = tuple(zip(texts[:-1:2], texts[1:-1:2]))
        return dataclasses.replace(self.build_request([{"type": _TEXT, "value": texts[-1]}], dataset),
                                   history=history, images=tuple(images), request_id=_request_id(dataset, images))

    def _user_turn(self, items: Sequence[Mapping[str, str]]) -> tuple[str, list[str]]:
        """The text (with an in-text image marker where needed) and image paths of one message."""
        text, images = "", []
        for item in items:
            kind, value = item.get("type"), item.get("value")
            if kind == _TEXT:
                text += value
            elif kind == _IMAGE:
                images.append(value)
                if text:  # not leading: keep the image where it sits in the text
                    text += self.image_token
            else:
                raise TGLlavaInputError(f"TG-LLaVA takes text and one image, not {kind!r} input ({value})")
        if len(images) > 1:
            raise TGLlavaInputError(
                f"TG-LLaVA is a single-image model; this row has {len(images)} images ({', '.join(images)})"
            )
        return text, images

    def row_counts(self, dataset: str | None) -> tuple[int, int]:
        """``(failed, calls)`` of this instance for ``dataset`` (this process's rows only)."""
        return self._failures[dataset], self._calls[dataset]

    def _engine(self):
        """The loaded engine (an instance from :meth:`without_engine` has none)."""
        if self.engine is None:
            raise TGLlavaConfigError("this TGLLaVA was built without_engine(); it can build prompts, not answer")
        return self.engine

    def _fail(self, reason: str, dataset: str | None) -> str:
        """Count and log a failed row; return the text recorded as its prediction."""
        self._failures[dataset] += 1
        logger.warning(
            "TG-LLaVA could not answer a row of %s (%d failed of %d rows so far in this process): %s",
            dataset, self._failures[dataset], self._calls[dataset], reason,
        )
        return failure_text(reason)


def rank_device() -> str:
    """The device of this process: ``cuda:<LOCAL_RANK mod visible GPUs>`` under torchrun, ``cuda``
    alone, ``cpu`` without GPUs.

    VLMEvalKit's ``run.py`` narrows ``CUDA_VISIBLE_DEVICES`` to each local rank's share of the GPUs
    when it can list them (``nvidia-smi``); indexing by local rank keeps ranks apart when it could not,
    and stays inside the rank's share when it did.
    """
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    if int(os.environ.get("LOCAL_WORLD_SIZE", "1")) > 1:
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0')) % torch.cuda.device_count()}"
    return "cuda"


def _request_id(dataset: str | None, images: Sequence[str]) -> str:
    """``<dataset>/<image file name>`` (or the dataset alone): how engine errors name the row."""
    name = dataset or "vlmevalkit"
    return f"{name}/{Path(images[0]).name}" if images else name


def _missing_image(message: Any) -> str | None:
    """The failure reason of a message that names a local image file that does not exist, else ``None``.

    ``BaseModel.generate`` would assert on it (aborting the whole dataset); the row fails instead.
    """
    if isinstance(message, list):
        for item in message:
            if isinstance(item, dict) and item.get("type") == _IMAGE and _is_missing_file(item.get("value")):
                return f"image file {item.get('value')} does not exist"
    return None


def _is_missing_file(value: Any) -> bool:
    """True for a local image path that does not exist (data URIs and URLs are not local files)."""
    return isinstance(value, str) and not value.startswith(_NON_FILE_IMAGE_PREFIXES) and not os.path.exists(value)


# --------------------------------------------------------------------------------------------------
# Registration
# --------------------------------------------------------------------------------------------------
def register() -> tuple[str, ...]:
    """Install :data:`PRESETS` into ``vlmeval.config.supported_VLM`` in place; expose the class.

    Idempotent. After it, ``--model TG-LLaVA-Qwen2-7B`` resolves, and ``--config`` entries may use
    ``"class": "TGLLaVA"``.

    Returns:
        The registered preset names.

    Raises:
        TGLlavaConfigError: a preset name is already taken by a model that is not ours.
    """
    import vlmeval.config
    import vlmeval.vlm

    supported = vlmeval.config.supported_VLM
    for preset in PRESETS:
        current = supported.get(preset.name)
        if current is not None and not _is_ours(current):
            raise TGLlavaConfigError(f"VLMEvalKit already has a model named {preset.name!r}; refusing to replace it")
        supported[preset.name] = functools.partial(TGLLaVA, **preset.keywords())
    setattr(vlmeval.vlm, CLASS_NAME, TGLLaVA)
    return tuple(preset.name for preset in PRESETS)


def _is_ours(factory: Any) -> bool:
    """Whether a ``supported_VLM`` entry builds a :class:`TGLLaVA` (possibly from an earlier import)."""
    func = getattr(factory, "func", factory)
    return getattr(func, "__name__", None) == CLASS_NAME and getattr(func, "__module__", None) == __name__


def bind_presets(*, model_path: str | os.PathLike | None = None, variant: str | None = None,
                 generation: Mapping[str, Any] | None = None, names: Sequence[str] | None = None,
                 batch_size: int | None = None) -> None:
    """Point registered presets at a checkpoint and/or override their keywords, in place.

    ``run.py`` calls this with its ``--model-path``/``--variant`` and VLMEvalKit's generation flags.
    A JSON ``--config`` entry without ``"class"`` still overrides these (VLMEvalKit passes the entry
    as keyword arguments to the preset).

    Args:
        model_path: Checkpoint directory for every preset.
        variant: Variant for presets without one (``tg_llava``). A preset whose own variant differs
            is left alone here; :func:`check_variant_request` reports the conflict for the presets a
            run actually uses.
        generation: Extra :class:`TGLLaVA` keywords (``max_new_tokens``, ``temperature``, ...).
        names: Limit to these presets (default all).
        batch_size: Rows per model call for every preset (``run.py --batch-size``); ``None`` = the
            preset's default (:data:`~.vlmevalkit_batching.DEFAULT_BATCH_SIZE`).

    Raises:
        TGLlavaConfigError: :func:`register` has not been called, or a bad ``batch_size``.
    """
    import vlmeval.config

    supported = vlmeval.config.supported_VLM
    for preset in PRESETS:
        if names is not None and preset.name not in names:
            continue
        if preset.name not in supported:
            raise TGLlavaConfigError("call register() before bind_presets()")
        keywords = dict(supported[preset.name].keywords)
        if model_path is not None:
            keywords["model_path"] = str(model_path)
        if variant is not None and preset.variant is None:
            keywords["variant"] = variant
        keywords.update(generation or {})
        if batch_size is not None:
            keywords["batch_size"] = check_batch_size(batch_size, where="--batch-size")
        supported[preset.name] = functools.partial(TGLLaVA, **keywords)


def check_variant_request(model_names: Sequence[str], variant: str | None) -> None:
    """Refuse ``--variant`` for a preset that already names a different variant.

    Args:
        model_names: The models of the run (``--model`` values or ``--config`` keys).
        variant: The ``--variant`` value, if any.

    Raises:
        TGLlavaConfigError: e.g. ``--model TG-LLaVA-Qwen2-7B --variant tg-llava-llama3-8b``.
    """
    if variant is None:
        return
    for name in model_names:
        preset = PRESETS_BY_NAME.get(name)
        if preset is not None and preset.variant not in (None, variant):
            raise TGLlavaConfigError(f"--variant {variant} contradicts --model {name} (a {preset.variant} preset)")


# --------------------------------------------------------------------------------------------------
# Run manifest
# --------------------------------------------------------------------------------------------------
def run_manifest(model_name: str, *, checkpoint: str | os.PathLike, variant: str | None, llm: str | None,
                 batch_size: int | None = None, toolkit: VLMEvalKitInstall | None = None) -> RunManifest:
    """The run manifest ``run.py`` writes as ``<work_dir>/<model_name>/tg_llava_run.json``.

    The results helper reads it to label the score files of that folder.

    Args:
        model_name: VLMEvalKit model name (the output folder).
        checkpoint: Checkpoint directory evaluated.
        variant: Variant name, or ``None`` for a custom checkpoint.
        llm: The variant's LLM (``Variant.llm``, e.g. ``Qwen2-7B-Instruct``), or the checkpoint's
            ``text_config.model_type`` for a custom checkpoint.
        batch_size: Rows per model call of the run (:func:`run_batch_sizes`).
        toolkit: The VLMEvalKit of the run (default: the one this process finds); its distribution,
            version and checkout commit go into the manifest.

    Returns:
        The manifest (:func:`tg_llava_eval.results.manifest.build_run_manifest`).
    """
    toolkit = toolkit or locate_vlmevalkit()
    return build_run_manifest(
        toolkit="vlmevalkit",
        toolkit_version=toolkit.version,
        toolkit_distribution=toolkit.distribution,
        toolkit_commit=toolkit.commit,
        model_name=model_name,
        variant=variant,
        llm=llm,
        checkpoint=str(Path(checkpoint).resolve()),
        batch_size=batch_size,
    )


def checkpoint_manifest(model_name: str, model_path: str | os.PathLike, variant: str | None, *,
                        batch_size: int | None = None, toolkit: VLMEvalKitInstall | None = None) -> RunManifest:
    """:func:`run_manifest` for a checkpoint directory, its variant checked or recognised from its config.

    Reads only ``config.json`` (no weights), so ``run.py`` can refuse a wrong ``--variant`` before
    VLMEvalKit starts.

    Args:
        model_name: VLMEvalKit model name.
        model_path: Checkpoint directory.
        variant: The preset's or the user's variant, or ``None`` to recognise it.
        batch_size: Rows per model call of the run, recorded in the manifest.
        toolkit: The VLMEvalKit of the run (see :func:`run_manifest`).

    Returns:
        The manifest.

    Raises:
        TGLlavaConfigError: the directory has no config.json or does not match ``variant``.
    """
    from tg_llava_eval.modeling import TGLlavaConfig

    if not (Path(model_path) / "config.json").is_file():
        raise TGLlavaConfigError(f"--model-path {str(model_path)!r} is not a checkpoint directory (no config.json)")
    config = TGLlavaConfig.from_pretrained(str(model_path))
    resolved = resolve_variant(config, variant, source=str(model_path))
    llm = get_variant(resolved).llm if resolved is not None else config.text_config.model_type
    return run_manifest(model_name, checkpoint=model_path, variant=resolved, llm=llm, batch_size=batch_size,
                        toolkit=toolkit)


def run_batch_sizes(model_names: Sequence[str], config_path: str | os.PathLike | None,
                    flag: int | None) -> dict[str, int]:
    """The batch size each of our models of a run will use, for its manifest (checked before the run).

    The rule :class:`TGLLaVA` follows: a ``--config`` entry's own ``batch_size`` wins; otherwise a
    preset gets ``run.py --batch-size`` (:func:`bind_presets`), and a ``"class": "TGLLaVA"`` entry,
    which carries its own keywords, the default.

    Args:
        model_names: Our models of the run (``--model`` values or ``--config`` keys).
        config_path: The ``--config`` JSON, if any.
        flag: The ``--batch-size`` value, if given.

    Returns:
        ``{model name: batch size}``.

    Raises:
        TGLlavaConfigError: a bad flag or entry value (naming it).
    """
    if flag is not None:
        check_batch_size(flag, where="--batch-size")
    entries = json.loads(Path(config_path).read_text()).get("model", {}) if config_path is not None else {}
    sizes = {}
    for name in model_names:
        entry = entries.get(name, {})
        if "batch_size" in entry:
            sizes[name] = check_batch_size(entry["batch_size"], where=f"--config entry {name!r}")
        elif "class" not in entry and flag is not None:
            sizes[name] = flag
        else:
            sizes[name] = DEFAULT_BATCH_SIZE
    return sizes
