"""TG-LLaVA as an lmms-eval 0.7.x *simple* model, delegating all inference to the engine.

``lmms-eval --model tg_llava --model_args pretrained=DIR --tasks mme,pope`` resolves
:class:`TGLlava` through the ``lmms_eval.models`` entry point of this package
(:mod:`tg_llava_eval.model_wrappers.lmms_eval_registration`); lmms-eval itself is not modified.

The wrapper is thin on purpose: it turns lmms-eval ``Instance`` argument tuples
into :mod:`tg_llava_eval.inference.requests` records and hands them to
:class:`tg_llava_eval.inference.TGLlavaEngine`, which owns loading, the conversation template,
image/crop preprocessing, the 77-token text guide, left-padded batching and the vision cache.
What lives here is only what lmms-eval's contract requires:

* **Request tuples** (``lmms_eval/api/task.py`` ``construct_requests``):
  ``generate_until``: ``(context, gen_kwargs, doc_to_visual, doc_id, task, split)``;
  ``loglikelihood``: ``(context, continuation | doc_to_target, doc_to_visual, doc_id, task,
  split)`` or the 2-tuple ``("", choice)`` of ``acc_mutual_info``;
  ``generate_until_multi_round``: ``(context, gen_kwargs, doc_to_visual, doc_to_text, doc_id,
  task, split)``. Visuals are looked up per request in ``self.task_dict[task][split][doc_id]``
  (upstream's LLaVA wrapper uses the first request's task for a whole batch, which mixes up
  documents when two tasks share generation settings).
* **Text guide**: ``guide_text`` is left to the engine, whose rule is the official one: the
  question text (the task's full context, pre/post prompts included) without ``<image>`` markers,
  tokenised by CLIP and truncated to 77 tokens.
* **Generation settings** from ``gen_kwargs``: ``until`` -> stop strings, ``max_new_tokens``,
  ``temperature``, ``top_p``, ``num_beams``, ``do_sample`` (false forces greedy). ``batch_size``
  is honoured: requests with equal settings are sorted by context length and sent to the engine
  ``batch_size`` at a time.
* **Log-likelihood and the 0.7.x bare-tuple bug**: the evaluator passes every output through
  ``unwrap_generation_output`` (``api/instance.py``), which stringifies a bare ``(float, bool)``;
  ``multiple_choice`` then fails to unpack it. An lmms-eval ``GenerationResult`` is passed through
  untouched, so the pair is returned inside one. lmms-eval's ``multiple_choice`` picks the
  **argmin** of the first element (``task.py``, issue #370: built-in models return a loss), so by
  default the first element is the continuation's negative log-likelihood (summed over its
  tokens, nats); ``loglikelihood_as=logprob`` returns the log-probability instead, which is what
  the ``perplexity`` aggregation and ``acc_mutual_info`` assume.
* **Bad documents** (missing/corrupt image, empty question, over-long question, a failing
  ``doc_to_visual``) do not stop the run: the engine reports them per request, the response of
  that document is ``"[tg_llava error] <message>"`` (log-likelihood: ``(inf, False)`` /
  ``(-inf, False)``), each failure is logged with its task and doc id, and every call logs the
  number of failed requests.
* **Several processes** (``accelerate launch`` / ``torchrun``): each rank loads the model on its
  own device (``cuda:<local rank>``, or the CPU); lmms-eval shards the documents by rank, pads the
  ranks to equal request counts and gathers the results on rank 0 itself. The wrapper only has to
  expose ``device``, ``rank`` and ``world_size`` and answer every request it is given.
* **Response cache** (``cache_dir=DIR``): every batch's answers are committed to a per-rank
  SQLite file (:class:`tg_llava_eval.inference.response_cache.ResponseCache`, keyed by a
  fingerprint of the checkpoint's files, the settings, the request type and the full request), so
  the same command after a kill answers the recorded requests without the model. lmms-eval's own
  ``--use_cache`` crashes on log-likelihood results in 0.7.3.
* **Run manifest**: ``tg_llava_run.json`` (schema ``tg_llava_run/1``: variant, LLM, checkpoint,
  versions) is written beside lmms-eval's results JSON by rank 0 when the evaluation finishes;
  see :func:`write_run_manifest` for the rule that finds that folder.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import math
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from lmms_eval.api.instance import GenerationResult as LmmsGenerationResult
from lmms_eval.api.instance import Instance, TokenCounts
from lmms_eval.api.model import lmms
from PIL import Image
from tqdm import tqdm

from tg_llava_eval.errors import TGLlavaConfigError
from tg_llava_eval.inference import TGLlavaEngine
from tg_llava_eval.inference.generation_settings import GENERATION_KEYS, GenerationSettings, positive_int
from tg_llava_eval.inference.requests import (
    GenerationRequest,
    GenerationResult,
    LoglikelihoodRequest,
    LoglikelihoodResult,
)
from tg_llava_eval.inference.response_cache import ResponseCache, check_cache_dir
from tg_llava_eval.model_wrappers.lmms_eval_registration import MODEL_ID, registered_variants, wrapper_class_name
from tg_llava_eval.results.manifest import RunManifest, build_run_manifest
from tg_llava_eval.results.manifest import write_run_manifest as write_manifest_file
from tg_llava_eval.variants import VARIANTS, Variant, check_variant

logger = logging.getLogger(__name__)

#: Prefix of the response recorded for a document the model could not answer.
ERROR_RESPONSE_PREFIX = "[tg_llava error] "

#: ``gen_kwargs`` keys that configure LLaVA's own image pipeline and mean nothing here:
#: TG-LLaVA's processor always pads to a square (LLaVA-1.5's "pad" aspect ratio).
IGNORED_GEN_KWARGS = frozenset({"image_aspect_ratio"})

#: ``loglikelihood_as`` choices: what the first element of a log-likelihood pair is.
LOGLIKELIHOOD_OUTPUTS = ("loss", "logprob")

VisualList = list[Any]


class TGLlava(lmms):
    """TG-LLaVA (and LLaVA-1.5 checkpoints of this project) for lmms-eval.

    ``--model_args`` (all but ``pretrained`` optional):

    Args:
        pretrained: Checkpoint directory (or hub id) loadable by ``TGLlavaEngine.from_pretrained``.
        variant: Name of a :mod:`tg_llava_eval.variants` variant. When given, the checkpoint's
            config must match it (``tg_llava_eval.variants.IDENTITY_FIELDS``); it is recorded in the
            run manifest. The per-variant model ids set it by default.
        conv_template: Conversation template name (``plain``, ``vicuna_v1``, ``llama_3``,
            ``qwen_2``); default: the checkpoint's own.
        dtype: ``auto``, ``float32``, ``bfloat16`` or ``float16``.
        device: Device of a single-process run (``cuda:0``, ``cpu``, ...). With several
            processes each rank uses its own device and only ``device=cpu`` is honoured.
        device_map: ``auto`` etc. to shard one model over the visible GPUs (single process only).
        cache_vision: Cache the text-independent vision-tower outputs per image (default true).
        max_length: Longest prompt + answer in LLM tokens; longer requests are reported as failed.
        batch_size: Requests per engine batch (lmms-eval's ``--batch_size``; an integer).
        max_batch_size: Accepted for lmms-eval's ``--max_batch_size`` and ignored.
        loglikelihood_as: ``loss`` (default; what ``multiple_choice``'s argmin expects) or
            ``logprob``.
        cache_dir: Folder of the response cache (created if missing); answers recorded there by
            an earlier run of the same checkpoint and settings are reused (docs/lmms_eval.md,
            "Resume"). Default: no cache.

    Raises:
        TypeError: For a ``--model_args`` key this wrapper does not know (names it).
        ValueError: For an unusable value (names the argument), or ``device_map`` combined with
            several processes. ``pretrained`` that is not a checkpoint directory with a
            ``config.json`` and a ``cache_dir`` that is not a writable folder are reported
            (``TGLlavaConfigError``, one line) before anything is loaded.
        TGLlavaConfigError: When the checkpoint does not match ``variant``.
    """

    is_simple = True
    #: lmms-eval model id recorded in the run manifest (``model_name``).
    model_id = MODEL_ID
    #: Variant assumed when ``variant`` is not given (``None``: whatever the checkpoint is).
    default_variant: str | None = None

    def __init__(
        self,
        pretrained: str,
        variant: str | None = None,
        conv_template: str | None = None,
        dtype: str = "auto",
        device: str | None = None,
        device_map: str | None = None,
        cache_vision: bool = True,
        max_length: int | None = None,
        batch_size: int | str = 1,
        max_batch_size: int | str | None = None,
        loglikelihood_as: str = "loss",
        cache_dir: str | None = None,
        **unknown_args: Any,
    ) -> None:
        super().__init__()
        if unknown_args:
            raise TypeError(
                f"{type(self).__name__}: unknown --model_args {sorted(unknown_args)}; accepted: "
                "pretrained, variant, conv_template, dtype, device, device_map, cache_vision, "
                "max_length, loglikelihood_as, cache_dir (and lmms-eval's batch_size, max_batch_size, device)"
            )
        self._batch_size = positive_int(batch_size, "batch_size")
        if max_batch_size is not None:
            logger.debug("max_batch_size=%s ignored: TG-LLaVA uses a fixed batch_size", max_batch_size)
        if not isinstance(cache_vision, bool):
            raise ValueError(f"model_args cache_vision must be true or false, got {cache_vision!r}")
        if max_length is not None:
            max_length = positive_int(max_length, "max_length")
        if loglikelihood_as not in LOGLIKELIHOOD_OUTPUTS:
            raise ValueError(
                f"model_args loglikelihood_as must be one of {LOGLIKELIHOOD_OUTPUTS}, got {loglikelihood_as!r}"
            )
        self._loglikelihood_as = loglikelihood_as
        # Paths before anything heavy: a typo must not cost a model load (or a process group).
        checkpoint_dir = check_checkpoint_dir(pretrained)
        cache_folder = check_cache_dir(cache_dir, argument="model_args cache_dir") if cache_dir is not None else None

        device, device_map = self._place_on_rank(device, device_map)
        # lmms-eval's arg parser turns numeric strings into numbers; a path is always a string.
        self.pretrained = str(pretrained)
        self._engine: TGLlavaEngine | None = TGLlavaEngine.from_pretrained(
            self.pretrained,
            dtype=dtype,
            device=device,
            device_map=device_map,
            cache_vision=cache_vision,
            template=conv_template,
            max_length=max_length,
        )
        self._device = torch.device(self._engine.device)

        config = self._engine.model.config
        declared = variant if variant is not None else self.default_variant
        if declared is not None:
            check_variant(
                config, declared, source=self.pretrained,
                hint="pass the right variant= in --model_args, or use --model tg_llava",
            )
        #: Variant name: declared (``variant=`` or the model id's), else the checkpoint's own record.
        self.variant: str | None = declared if declared is not None else config.variant
        #: The LLM for the run manifest (kept after clean()): the variant's display name, else the
        #: LLM's transformers ``model_type``.
        self.llm: str = _llm_name(self.variant, config)
        #: The checkpoint's TG switches, named as in the run manifest schema.
        self.switches = {
            "text_guided_mask": bool(config.use_text_guided_mask),
            "detail_perceiver": bool(config.use_detail_perceiver),
        }
        #: Failed requests so far, per lmms-eval request type (also logged after every call).
        self.failure_counts: Counter[str] = Counter()
        self._warned_gen_kwargs: set[str] = set()
        #: The response cache (``cache_dir=``), opened by the first batch (:meth:`_open_response_cache`).
        self.response_cache: ResponseCache | None = None
        self._cache_dir, self._checkpoint_dir = cache_folder, checkpoint_dir
        logger.info(
            "tg_llava: loaded %s (variant %s) on %s, rank %d of %d, batch_size %d",
            self.pretrained,
            self.variant or "from checkpoint",
            self._device,
            self._rank,
            self._world_size,
            self._batch_size,
        )

    # ------------------------------------------------------------------ placement and properties

    def _place_on_rank(self, device: str | None, device_map: str | None) -> tuple[str | None, str | None]:
        """Choose this process's device; with several processes, one device per rank.

        ``lmms-eval`` shards documents by rank; under ``accelerate launch`` or ``torchrun`` the
        accelerate state (shared by lmms-eval's own ``Accelerator``) knows the rank and the local
        device (``cuda:<local rank>``, or the CPU when there is no GPU or ``--cpu`` was given).

        Args:
            device: The ``device`` model arg (``None`` = the engine's default).
            device_map: The ``device_map`` model arg.

        Returns:
            ``(device, device_map)`` to pass to the engine.

        Raises:
            ValueError: ``device_map`` with several processes (each rank holds a whole model).
        """
        accelerator = Accelerator()
        if accelerator.num_processes <= 1:
            return device, device_map
        if device_map:
            raise ValueError(
                f"model_args device_map={device_map!r} shards one model over several GPUs and cannot "
                f"be combined with {accelerator.num_processes} processes (one model per rank); drop it"
            )
        self.accelerator = accelerator
        self._rank = accelerator.process_index
        self._world_size = accelerator.num_processes
        rank_device = "cpu" if device == "cpu" else str(accelerator.device)
        return rank_device, None

    @property
    def device(self) -> torch.device:
        """The device this rank's model lives on (lmms-eval gathers request counts on it)."""
        return self._device

    @property
    def batch_size(self) -> int:
        """Requests per engine batch."""
        return self._batch_size

    @property
    def engine(self) -> TGLlavaEngine:
        """The inference engine.

        Raises:
            RuntimeError: After :meth:`clean` released it.
        """
        if self._engine is None:
            raise RuntimeError("tg_llava: the model was released by clean(); create a new TGLlava")
        return self._engine

    # ------------------------------------------------------------------ generate_until

    def generate_until(self, requests: list[Instance]) -> list[LmmsGenerationResult]:
        """Answer ``generate_until`` requests in batches of ``batch_size``.

        Args:
            requests: Instances whose ``args`` are ``(context, gen_kwargs, doc_to_visual, doc_id,
                task, split)``.

        Returns:
            One lmms-eval ``GenerationResult`` per request, in request order: the answer text
            (cut before the first ``until`` string) with prompt/answer token counts, or
            ``"[tg_llava error] <message>"`` for a request that failed.
        """
        outputs: list[LmmsGenerationResult | None] = [None] * len(requests)
        batches = list(self._batches(requests, lambda inst: inst.args[1], lambda inst: len(inst.args[0])))
        failed = 0
        for batch in tqdm(batches, disable=self._rank != 0, desc="tg_llava generate_until"):
            gen_requests, errors = [], []
            for index in batch:
                context, gen_kwargs, doc_to_visual, doc_id, task, split = requests[index].args
                visuals, error = self._doc_visuals(doc_to_visual, task, split, doc_id)
                request_id = _request_id(task, split, doc_id)
                gen_requests.append(self._generation_request(context, visuals, gen_kwargs, request_id, task))
                errors.append(error)
            results = self._generate("generate_until", gen_requests, errors)
            for index, result in zip(batch, results):
                failed += result.error is not None
                outputs[index] = _to_lmms_output(result)
        self._log_failures("generate_until", failed, len(requests))
        return outputs  # type: ignore[return-value]

    def _generation_request(
        self, context: str, visuals: VisualList, gen_kwargs: dict, request_id: str, task: str
    ) -> GenerationRequest:
        """Build the engine request of one document (the engine applies the template)."""
        return GenerationRequest(
            prompt=context,
            images=tuple(visuals),
            guide_text=None,  # the engine's official rule: the prompt without <image> markers
            request_id=request_id,
            **self._generation_settings(gen_kwargs, task),
        )

    def _generate(
        self, request_type: str, gen_requests: list[GenerationRequest], errors: list[str | None]
    ) -> list[GenerationResult]:
        """Run the engine on the requests whose inputs could be gathered; keep the others' errors.

        Args:
            request_type: ``generate_until`` or ``generate_until_multi_round`` (response-cache key).
            gen_requests: One request per document of the batch.
            errors: Per request, ``None`` or the message of a failure found before the engine
                (``doc_to_visual`` raised, a visual of a type TG-LLaVA cannot read).

        Returns:
            One engine result per request, in order.
        """
        for error in errors:
            if error is not None:  # found here; the engine logs the failures it finds
                logger.warning("tg_llava: %s", error)
        runnable = [req for req, err in zip(gen_requests, errors) if err is None]
        engine_results = iter(
            self._answer(request_type, runnable, self.engine.generate, GenerationResult) if runnable else []
        )
        return [GenerationResult(text="", error=err) if err is not None else next(engine_results) for err in errors]

    def _generation_settings(self, gen_kwargs: dict | None, task: str) -> dict[str, Any]:
        """Translate lmms-eval ``gen_kwargs`` into :class:`GenerationRequest` fields.

        Args:
            gen_kwargs: The task's ``generation_kwargs`` merged with ``--gen_kwargs``.
            task: Task name, for error messages.

        Returns:
            Keyword arguments ``max_new_tokens``, ``temperature``, ``top_p``, ``num_beams``, ``stop``.

        Raises:
            ValueError: A value of the wrong type or range (names the task and key).
        """
        settings = generation_settings(gen_kwargs or {}, task)
        for key in sorted(set(gen_kwargs or {}) - set(GENERATION_KEYS) - self._warned_gen_kwargs):
            self._warned_gen_kwargs.add(key)
            if key in IGNORED_GEN_KWARGS:
                logger.info("tg_llava: gen_kwargs %r of task %s ignored (images are always padded to a square)",
                            key, task)
            else:
                logger.warning("tg_llava: unknown gen_kwargs key %r of task %s ignored", key, task)
        return settings

    # ------------------------------------------------------------------ loglikelihood

    def loglikelihood(self, requests: list[Instance]) -> list[LmmsGenerationResult]:
        """Score each continuation given its context and image.

        Args:
            requests: Instances whose ``args`` are ``(context, continuation, doc_to_visual,
                doc_id, task, split)`` (``continuation`` may be ``doc_to_target``, a callable of
                the doc) or ``("", continuation)`` (``acc_mutual_info``'s unconditional terms).

        Returns:
            Per request an lmms-eval ``GenerationResult`` whose ``text`` is the pair
            ``(value, is_greedy)`` — wrapped so that lmms-eval 0.7.x does not stringify it.
            ``value`` is ``-sum_t log p(continuation_t | ...)`` (``loglikelihood_as=loss``) or its
            negation (``logprob``); ``is_greedy`` says whether greedy decoding yields the
            continuation. A failed request gives ``(inf, False)`` (``-inf`` for ``logprob``).
        """
        outputs: list[LmmsGenerationResult | None] = [None] * len(requests)
        batches = list(
            self._batches(requests, lambda inst: None, lambda inst: len(inst.args[0]) + len(str(inst.args[1])))
        )
        failed = 0
        for batch in tqdm(batches, disable=self._rank != 0, desc="tg_llava loglikelihood"):
            prepared = [self._loglikelihood_request(requests[index].args) for index in batch]
            runnable = [request for request, error in prepared if error is None]
            engine_results = iter(
                self._answer("loglikelihood", runnable, self.engine.loglikelihood, LoglikelihoodResult)
                if runnable
                else []
            )
            for index, (_, error) in zip(batch, prepared):
                result = next(engine_results) if error is None else LoglikelihoodResult(-math.inf, False, error=error)
                if result.error is not None:
                    failed += 1
                    if error is not None:  # found here; the engine logs the failures it finds
                        logger.warning("tg_llava: %s", error)
                    value = math.inf if self._loglikelihood_as == "loss" else -math.inf
                    outputs[index] = LmmsGenerationResult(text=(value, False))
                    continue
                value = -result.logprob if self._loglikelihood_as == "loss" else result.logprob
                outputs[index] = LmmsGenerationResult(text=(float(value), bool(result.is_greedy)))
        self._log_failures("loglikelihood", failed, len(requests))
        return outputs  # type: ignore[return-value]

    def _loglikelihood_request(self, args: tuple) -> tuple[LoglikelihoodRequest, str | None]:
        """Turn one loglikelihood argument tuple into an engine request (and a pre-engine error).

        Args:
            args: See :meth:`loglikelihood`.

        Returns:
            ``(request, error)``; ``error`` is ``None`` unless the visuals or the continuation
            could not be obtained.
        """
        if len(args) == 2:  # ("", choice): the unconditional term of acc_mutual_info, no image
            context, continuation = args
            request = LoglikelihoodRequest(prompt=context, continuation=continuation.lstrip(),
                                           request_id="unconditional")
            if not context.strip():
                # TG-LLaVA scores an answer to a question (template + text guide); a context-free
                # score has no meaning for it, so acc_mutual_info is not supported.
                return request, ("request unconditional: context-free scoring (acc_mutual_info) is not "
                                 "supported by TG-LLaVA")
            return request, None
        context, continuation, doc_to_visual, doc_id, task, split = args
        request_id = _request_id(task, split, doc_id)
        visuals, error = self._doc_visuals(doc_to_visual, task, split, doc_id)
        if callable(continuation):  # output_type: loglikelihood passes doc_to_target itself
            continuation = continuation(self.task_dict[task][split][doc_id])
        if not isinstance(continuation, str):
            error = error or f"request {request_id}: continuation must be a string, got {type(continuation).__name__}"
            continuation = ""
        # The engine scores the continuation as the assistant's answer, which starts right after the
        # template's assistant prefix; the space lmms-eval puts in front (`target_delimiter`) would
        # make every option start with a token the model never produces there.
        continuation = continuation.lstrip()
        return (
            LoglikelihoodRequest(
                prompt=context, continuation=continuation, images=tuple(visuals), guide_text=None, request_id=request_id
            ),
            error,
        )

    # ------------------------------------------------------------------ multi-round

    def generate_until_multi_round(self, requests: list[Instance]) -> list[LmmsGenerationResult]:
        """Multi-round generation driven by the task's ``doc_to_text``.

        Round 0 answers the request's context and visuals. For round ``r >= 1`` the task's
        ``doc_to_text(doc, previous_output=[answers so far], round_idx=r,
        previous_round_info=...)`` returns ``(visuals, context, terminal, round_results, info)``;
        a document stops when ``terminal`` is true, and its response is ``round_results`` when
        the task gives one (else the list of answers). Documents of one batch advance together
        but stop independently; each round is a fresh single-turn request, the context carrying
        what the task wants the model to see (lmms-eval's convention, as in its LLaVA-OneVision
        wrapper). A failed round ends the document with the error as its last answer.

        Args:
            requests: Instances whose ``args`` are ``(context, gen_kwargs, doc_to_visual,
                doc_to_text, doc_id, task, split)``.

        Returns:
            Per request an lmms-eval ``GenerationResult`` whose ``text`` is the list of per-round
            results (passed through to ``process_results`` unchanged).
        """
        outputs: list[LmmsGenerationResult | None] = [None] * len(requests)
        batches = list(self._batches(requests, lambda inst: inst.args[1], lambda inst: len(inst.args[0])))
        failed = 0
        for batch in tqdm(batches, disable=self._rank != 0, desc="tg_llava multi-round"):
            states = []
            for index in batch:
                context, gen_kwargs, doc_to_visual, doc_to_text, doc_id, task, split = requests[index].args
                visuals, error = self._doc_visuals(doc_to_visual, task, split, doc_id)
                states.append(_RoundState(index, context, visuals, error, gen_kwargs, doc_to_text, doc_id, task, split))
            round_idx = 0
            active = states
            while active:
                if round_idx > 0:
                    for state in active:
                        self._next_round(state, round_idx)
                    active = [s for s in active if not s.done]
                    if not active:
                        break
                results = self._generate(
                    "generate_until_multi_round",
                    [
                        self._generation_request(s.context, s.visuals, s.gen_kwargs, s.request_id, s.task)
                        for s in active
                    ],
                    [s.error for s in active],
                )
                for state, result in zip(active, results):
                    if result.error is not None:
                        failed += 1
                        state.answers.append(ERROR_RESPONSE_PREFIX + result.error)
                        state.done = True
                    else:
                        state.answers.append(result.text)
                active = [s for s in active if not s.done]
                round_idx += 1
            for state in states:
                final = state.final if state.final is not None else state.answers
                outputs[state.index] = LmmsGenerationResult(text=list(final))
        self._log_failures("generate_until_multi_round", failed, len(requests))
        return outputs  # type: ignore[return-value]

    def _next_round(self, state: _RoundState, round_idx: int) -> None:
        """Ask the task for the next round of one document and update its state in place."""
        doc = self.task_dict[state.task][state.split][state.doc_id]
        try:
            visuals, context, terminal, round_results, info = state.doc_to_text(
                doc, previous_output=list(state.answers), round_idx=round_idx, previous_round_info=state.info
            )
        except Exception as exc:  # task code: report on this document, keep the run going
            message = f"request {state.request_id}: doc_to_text round {round_idx} raised {exc!r}"
            logger.warning("tg_llava: %s", message)
            state.answers.append(ERROR_RESPONSE_PREFIX + message)
            state.done = True
            return
        if terminal:
            state.done = True
            state.final = round_results
            return
        state.context, state.info = context, info
        state.visuals, state.error = _flatten_visuals(visuals, state.request_id)

    # ------------------------------------------------------------------ shared helpers

    def _answer(self, request_type: str, requests: list, run: Callable, result_type: type) -> list:
        """One batch through the response cache (when ``cache_dir`` is set) and the engine.

        Args:
            request_type: lmms-eval's request type (part of the cache key).
            requests: Engine requests of one wrapper batch.
            run: ``self.engine.generate`` or ``self.engine.loglikelihood``.
            result_type: The engine's result record of ``run``.

        Returns:
            The engine results, in order (cached ones read back, the others computed and committed).
        """
        def compute(pending: list) -> list:
            return run(pending, batch_size=self._batch_size)

        cache = self._open_response_cache()
        if cache is None:
            return compute(requests)
        return cache.answer(request_type, requests, compute, result_type)

    def _open_response_cache(self) -> ResponseCache | None:
        """The response cache of ``cache_dir`` (``None`` without one), opened on first use.

        Not in ``__init__``: the cache file is per rank, and under ``torchrun`` lmms-eval tells a
        simple model its rank only after creating it (``evaluator.evaluate`` sets ``_rank`` and
        ``_world_size`` before the first request; the accelerate state still says one process).
        """
        if self._cache_dir is not None and self.response_cache is None:
            self.response_cache = ResponseCache(
                self._cache_dir,
                checkpoint_dir=self._checkpoint_dir,
                settings=self._cache_settings(),
                rank=self._rank,
                world_size=self._world_size,
            )
        return self.response_cache

    def _cache_settings(self) -> dict[str, Any]:
        """What besides the checkpoint and the request changes an answer (response-cache key):
        the effective conversation template, dtype, ``max_length`` and default answer length."""
        return {
            "conv_template": self.engine.template,
            "dtype": str(self.engine.model.dtype),
            "max_length": self.engine.max_length,
            "default_max_new_tokens": self.engine.default_max_new_tokens,
        }

    def _batches(
        self, requests: Sequence[Instance], settings_of: Callable[[Instance], Any], length_of: Callable[[Instance], int]
    ) -> Iterator[list[int]]:
        """Group request indices by generation settings, longest first, ``batch_size`` at a time.

        Sorting by length (longest first) keeps padding small and makes an out-of-memory
        error show up on the first batch; the original order is restored by index.

        Args:
            requests: The instances of one call.
            settings_of: Key whose equal values may share a batch (``gen_kwargs``).
            length_of: Sort key (context length in characters).

        Yields:
            Lists of at most ``batch_size`` request indices.
        """
        groups: dict[str, list[int]] = {}
        for index, instance in enumerate(requests):
            key = json.dumps(settings_of(instance), sort_keys=True, default=repr)
            groups.setdefault(key, []).append(index)
        for indices in groups.values():
            indices.sort(key=lambda i: -length_of(requests[i]))
            for start in range(0, len(indices), self._batch_size):
                yield indices[start : start + self._batch_size]

    def _doc_visuals(
        self, doc_to_visual: Callable, task: str, split: str, doc_id: int
    ) -> tuple[VisualList, str | None]:
        """Fetch a document's visuals through the task's ``doc_to_visual``.

        Args:
            doc_to_visual: The task's bound ``doc_to_visual``.
            task: Task name (key of ``self.task_dict``, filled by the evaluator).
            split: Dataset split of the document.
            doc_id: Index of the document in the split.

        Returns:
            ``(visuals, error)``: a flat list of images (PIL images, paths or bytes) and ``None``,
            or whatever could be gathered and a message naming the document when
            ``doc_to_visual`` raised or returned something TG-LLaVA cannot read.
        """
        request_id = _request_id(task, split, doc_id)
        doc = self.task_dict[task][split][doc_id]
        try:
            visuals = doc_to_visual(doc)
        except Exception as exc:  # task code reading a bad document: report it, keep the run going
            return [], f"request {request_id}: doc_to_visual raised {exc!r}"
        return _flatten_visuals(visuals, request_id)

    def _log_failures(self, request_type: str, failed: int, total: int) -> None:
        """Count failed requests and log the count (WARNING when there are any)."""
        self.failure_counts[request_type] += failed
        level = logging.WARNING if failed else logging.INFO
        logger.log(
            level,
            "tg_llava: %d of %d %s requests failed on rank %d (responses start with %r)",
            failed,
            total,
            request_type,
            self._rank,
            ERROR_RESPONSE_PREFIX.strip(),
        )
        cache = self._open_response_cache()
        if cache is not None:
            cached, computed = cache.take_counts(request_type)
            logger.info(
                "tg_llava: response cache on rank %d: %d %s requests from the cache, %d computed",
                self._rank, cached, request_type, computed,
            )

    # ------------------------------------------------------------------ end of run

    def run_manifest(self) -> RunManifest:
        """The run manifest of this run (what the results collector reads).

        Returns:
            The manifest (:func:`tg_llava_eval.results.manifest.build_run_manifest`); its
            ``variant`` is empty when neither ``variant=``, the model id nor the checkpoint names
            one; ``llm`` is the variant's LLM display name, else the LLM's ``model_type``;
            ``switches`` are the checkpoint's TG-FOM / TG-DP flags (they describe a custom
            checkpoint to the results collector).
        """
        return build_run_manifest(
            toolkit="lmms-eval",
            toolkit_version=importlib.metadata.version("lmms_eval"),
            model_name=self.model_id,
            variant=self.variant,
            llm=self.llm,
            checkpoint=_checkpoint_location(self.pretrained),
            switches=self.switches,
        )

    def clean(self) -> None:
        """Called by lmms-eval after inference: write the run manifest, then free the model.

        Rank 0 writes ``tg_llava_run.json`` into lmms-eval's results folder when the run was
        started by the lmms-eval CLI with ``--output_path`` (see :func:`cli_results_dir`);
        otherwise the manifest is only logged (call :func:`write_run_manifest` yourself with
        :meth:`run_manifest` when driving ``simple_evaluate`` from Python).
        """
        if self._engine is not None:
            if self._rank == 0:
                manifest = self.run_manifest()
                results_dir = cli_results_dir()
                if results_dir is not None:
                    write_run_manifest(results_dir, manifest)
                else:
                    logger.info("tg_llava: no lmms-eval --output_path known; run manifest not written: %s", manifest)
            self._engine = None
        if self.response_cache is not None:
            self.response_cache.close()
        self.response_cache, self._cache_dir = None, None
        super().clean()


def _variant_wrapper(variant: Variant) -> type[TGLlava]:
    """The subclass behind ``--model <variant.lmms_eval_id>``: :class:`TGLlava` with that variant as
    its checked default (lmms-eval tells a model nothing about the name it was asked for)."""
    return type(
        wrapper_class_name(variant),
        (TGLlava,),
        {
            "__doc__": f"``--model {variant.lmms_eval_id}``: {variant.description} (variant {variant.name}, checked).",
            "__module__": __name__,
            "model_id": variant.lmms_eval_id,
            "default_variant": variant.name,
        },
    )


# One class per registered id, named as the entry point's manifests name it.
globals().update({wrapper_class_name(v): _variant_wrapper(v) for v in registered_variants()})


# ---------------------------------------------------------------------- module-level helpers

def generation_settings(gen_kwargs: dict, task: str = "?") -> dict[str, Any]:
    """Map lmms-eval ``gen_kwargs`` to :class:`GenerationRequest` fields (pure function).

    The rules are the project's one decoding validator,
    :meth:`tg_llava_eval.inference.generation_settings.GenerationSettings.from_kwargs` (``until`` ->
    stop strings; ``do_sample: false`` forces greedy; ``do_sample: true`` without a positive
    temperature samples at temperature 1). Other keys are ignored here.

    Returns:
        ``{"max_new_tokens", "temperature", "top_p", "num_beams", "stop"}``.

    Raises:
        TGLlavaConfigError: (a ``ValueError``) a bad value, naming the task and key.
    """
    return GenerationSettings.from_kwargs(gen_kwargs, where=f"task {task}: gen_kwargs").request_fields()


def check_checkpoint_dir(pretrained: Any) -> Path:
    """Validate ``model_args pretrained``: a local checkpoint directory with a ``config.json``.

    Returns:
        The directory.

    Raises:
        TGLlavaConfigError: One line naming the argument, the value and what was expected.
    """
    from tg_llava_eval.checkpoints.folders import checkpoint_problem

    expected = "expected a TG-LLaVA checkpoint directory with a config.json"
    if pretrained is None or isinstance(pretrained, bool) or not str(pretrained).strip():
        raise TGLlavaConfigError(f"model_args pretrained={pretrained!r}: {expected}")
    path = Path(str(pretrained)).expanduser()
    problem = checkpoint_problem(path)
    if problem is None:
        return path
    raise TGLlavaConfigError(f"model_args pretrained={str(pretrained)!r}: {problem}; {expected}")


def cli_results_dir(argv: Sequence[str] | None = None) -> Path | None:
    """The folder where the running lmms-eval CLI writes its results JSON, if there is one.

    lmms-eval 0.7.x gives a model no handle on its output location (the evaluator's
    ``lm.get_model_info()`` hook is commented out), so the folder is derived the way lmms-eval's
    ``EvaluationTracker`` derives it: ``<--output_path>/<sanitize_model_name(model name)>``, the
    model name being the ``pretrained=`` value of ``--model_args``. This is done only when the
    process runs lmms-eval's CLI (``lmms_eval.__main__`` imported, ``--model`` on the command
    line), with lmms-eval's own model-name functions, so the result is the folder its tracker
    writes to.

    Args:
        argv: Command-line arguments to read (default: ``sys.argv``).

    Returns:
        The folder, or ``None`` outside the CLI, without ``--output_path``, or when the arguments
        come from a ``--config`` file.
    """
    if "lmms_eval.__main__" not in sys.modules:
        return None
    from lmms_eval.loggers.evaluation_tracker import GeneralConfigTracker
    from lmms_eval.utils import sanitize_model_name

    # The four options that matter, read like lmms-eval's argparse parser reads them (``--model``
    # is declared so that it is not taken for an abbreviation of ``--model_args``).
    parser = argparse.ArgumentParser(add_help=False)
    for option in ("--model", "--model_args", "--output_path", "--config"):
        parser.add_argument(option)
    args, _ = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    if args.model is None or not args.output_path or args.config:
        return None
    model_name = GeneralConfigTracker._get_model_name(args.model_args or "")
    return Path(args.output_path) / sanitize_model_name(model_name)


def write_run_manifest(results_dir: str | os.PathLike, manifest: RunManifest) -> Path:
    """Write ``tg_llava_run.json`` into ``results_dir`` (created if needed), through the one writer
    (:func:`tg_llava_eval.results.manifest.write_run_manifest`), and log it.

    Args:
        results_dir: The folder holding lmms-eval's ``<date>_results.json`` for this model.
        manifest: The manifest (:meth:`TGLlava.run_manifest`).

    Returns:
        The path written.
    """
    path = write_manifest_file(results_dir, manifest)
    logger.info("tg_llava: wrote run manifest %s", path)
    return path


class _RoundState:
    """Progress of one document through :meth:`TGLlava.generate_until_multi_round`."""

    def __init__(self, index, context, visuals, error, gen_kwargs, doc_to_text, doc_id, task, split) -> None:
        self.index, self.context, self.visuals, self.error = index, context, visuals, error
        self.gen_kwargs, self.doc_to_text = gen_kwargs, doc_to_text
        self.doc_id, self.task, self.split = doc_id, task, split
        self.request_id = _request_id(task, split, doc_id)
        self.answers: list[str] = []
        self.info: Any = None
        self.final: list | None = None
        self.done = False


def _flatten_visuals(visuals: Any, request_id: str) -> tuple[VisualList, str | None]:
    """Flatten ``doc_to_visual`` output (``None``, an image, or nested lists) into a list.

    Returns:
        ``(images, error)``; ``error`` names the document when an item is not something TG-LLaVA
        reads (a PIL image, a path or encoded bytes; e.g. an audio dict).
    """
    flat: VisualList = []
    stack = [visuals]
    while stack:
        item = stack.pop()
        if item is None:
            continue
        if isinstance(item, (list, tuple)):
            stack.extend(reversed(item))
        else:
            flat.append(item)
    for item in flat:
        if not isinstance(item, (Image.Image, str, os.PathLike, bytes)):
            return flat, f"request {request_id}: TG-LLaVA reads images only, doc_to_visual gave a {type(item).__name__}"
    return flat, None


def _to_lmms_output(result: GenerationResult) -> LmmsGenerationResult:
    """Engine result -> lmms-eval result; a failure becomes the error response."""
    if result.error is not None:
        return LmmsGenerationResult(text=ERROR_RESPONSE_PREFIX + result.error)
    return LmmsGenerationResult(
        text=result.text,
        token_counts=TokenCounts(input_tokens=result.num_prompt_tokens, output_tokens=result.num_generated_tokens),
    )


def _request_id(task: str, split: str, doc_id: int) -> str:
    """Identifier echoed in error messages: ``task/split doc N``."""
    return f"{task}/{split} doc {doc_id}"


def _llm_name(variant: str | None, config: Any) -> str:
    """The variant's LLM display name (``Qwen2-7B-Instruct``), else the LLM's ``model_type``."""
    known = VARIANTS.get(variant) if variant is not None else None
    return known.llm if known is not None else config.text_config.model_type


def _checkpoint_location(pretrained: str) -> str:
    """Absolute path of a local checkpoint; a hub id unchanged."""
    path = Path(pretrained)
    return str(path.resolve()) if path.exists() else pretrained
