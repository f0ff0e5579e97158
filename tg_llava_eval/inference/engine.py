"""The inference engine shared by the VLMEvalKit wrapper, the lmms-eval wrapper and ``chat``.

It turns :class:`~.requests.GenerationRequest` / :class:`~.requests.LoglikelihoodRequest` records
into batched model calls:

1. **prepare** each request on its own through :class:`TGLlavaProcessor` (template, guide text,
   tokenisation with image-token expansion, image loading) — a bad request becomes a result with
   ``error`` set and never stops the others;
2. **vision features** come from the LRU :class:`~.vision_cache.VisionFeatureCache` (keyed by image
   content) or from one batched tower call for the misses; the text-dependent part (guide tower,
   TG-FOM, TG-DP) runs per request inside ``generate``;
3. **batch** requests with identical generation settings with the processing layer's one batch
   assembler (each request is encoded once by :func:`~tg_llava_eval.processing.encode_sample`,
   its cached features are put in the sample, :meth:`TGLlavaProcessor.pad_batch` left-pads),
   and call ``model.generate`` (transformers' GenerationMixin, KV cache);
4. **decode** the new tokens and cut the answer at the first stop string.

Batching never changes an answer: the guide's padding is masked inside TG-DP (``guide_padding=
"masked"``), and positions are computed from the attention mask so left padding does not shift them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import TGLlavaConfigError, TGLlavaInputError
from ..modeling import TGLlavaForConditionalGeneration
from ..processing import TGLlavaProcessor, encode_sample
from ..processing.image_loading import describe_source
from .requests import (
    GenerationRequest,
    GenerationResult,
    LoglikelihoodRequest,
    LoglikelihoodResult,
)
from .vision_cache import CachedFeatures, VisionFeatureCache, features_fingerprint, image_digest

logger = logging.getLogger(__name__)

#: Default answer length when a request does not set one (the official runner's 512).
DEFAULT_MAX_NEW_TOKENS = 512
#: Default capacity of the vision-feature cache, in images.
DEFAULT_CACHE_SIZE = 256
#: dtype names accepted by :meth:`TGLlavaEngine.from_pretrained`.
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
          "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


@dataclass
class _Prepared:
    """A request after the processor: its encoded text (:func:`encode_sample`, no pixels) and the
    image (or its cache key); the vision features are added at batching time."""

    index: int
    sample: dict[str, torch.Tensor]
    image_input: Any = None
    image: Any = None
    image_key: str | None = None
    image_name: str = "image"
    continuation_length: int = 0

    @property
    def has_image(self) -> bool:
        return self.image_input is not None

    @property
    def num_tokens(self) -> int:
        """LLM tokens of the request (prompt, image tokens and continuation), unpadded."""
        return int(self.sample["input_ids"].numel())


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | str | None:
    """``"auto"``/None pass through; names map to torch dtypes.

    Raises:
        TGLlavaConfigError: An unknown name (lists the known ones).
    """
    if dtype is None or dtype == "auto" or isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPES[str(dtype).lower()]
    except KeyError:
        raise TGLlavaConfigError(f"unknown dtype {dtype!r}; use one of {sorted(DTYPES)} or 'auto'") from None


def default_device() -> str:
    """``cuda`` when available, else ``cpu``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


class TGLlavaEngine:
    """Batched generation and scoring with a vision-feature cache.

    Args:
        model: A loaded :class:`TGLlavaForConditionalGeneration` (eval mode is set).
        processor: Its :class:`TGLlavaProcessor`.
        cache_vision: Cache the CLIP tower's outputs per image content.
        cache_size: Cache capacity in images.
        max_length: Longest prompt + answer in LLM tokens (``None`` = the LLM's
            ``max_position_embeddings``); longer prompts are reported as errors.
        default_max_new_tokens: Answer length when a request does not set one.
    """

    def __init__(
        self,
        model: TGLlavaForConditionalGeneration,
        processor: TGLlavaProcessor,
        *,
        cache_vision: bool = True,
        cache_size: int = DEFAULT_CACHE_SIZE,
        max_length: int | None = None,
        default_max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    ):
        self.model = model.eval()
        self.processor = processor
        self.cache_vision = cache_vision
        self.cache = VisionFeatureCache(cache_size if cache_vision else 0)
        self.tower_calls = 0
        self.max_length = max_length or getattr(model.config.text_config, "max_position_embeddings", None)
        self.default_max_new_tokens = default_max_new_tokens
        self._fingerprint = features_fingerprint(model.config, processor)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        dtype: str | torch.dtype | None = "auto",
        device: str | torch.device | None = None,
        device_map: str | dict | None = None,
        cache_vision: bool = True,
        cache_size: int = DEFAULT_CACHE_SIZE,
        template: str | None = None,
        max_length: int | None = None,
        default_max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    ) -> TGLlavaEngine:
        """Load a checkpoint directory (ours, or one written by ``tg-llava-eval convert``).

        Args:
            path: Local directory (a hub id works too where a hub is reachable).
            dtype: ``"auto"`` (the checkpoint's), ``"bfloat16"``, ``"float16"``, ``"float32"``.
            device: Target device (default ``cuda`` if available, else ``cpu``); ignored with
                ``device_map``.
            device_map: Passed to ``from_pretrained`` (e.g. ``"auto"`` to spread a 13B model).
            cache_vision, cache_size, max_length, default_max_new_tokens: See the class.
            template: Override the checkpoint's conversation template (``vicuna_v1``, ...).

        Returns:
            The engine.
        """
        load_kwargs: dict[str, Any] = {"dtype": resolve_dtype(dtype)}
        if device_map is not None:
            load_kwargs["device_map"] = device_map
        model = TGLlavaForConditionalGeneration.from_pretrained(str(path), **load_kwargs)
        if device_map is None:
            model.to(device or default_device())
        processor = TGLlavaProcessor.from_pretrained(str(path))
        if template is not None:
            processor = processor.with_template(template)
        logger.info(
            "loaded %s (%s) on %s, dtype %s, template %s, vision cache %s",
            path, model.config.variant or "custom", model.device, model.dtype,
            processor.template.name, "on" if cache_vision else "off",
        )
        return cls(
            model, processor, cache_vision=cache_vision, cache_size=cache_size,
            max_length=max_length, default_max_new_tokens=default_max_new_tokens,
        )

    # ------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        """Device of the model's input embeddings (where inputs go)."""
        return self.model.get_input_embeddings().weight.device

    @property
    def template(self) -> str:
        """Name of the conversation template in use."""
        return self.processor.template.name

    def cache_info(self) -> dict[str, int]:
        """``hits``, ``misses``, ``tower_calls`` (images run through the tower) and ``size``."""
        return {
            "hits": self.cache.hits,
            "misses": self.cache.misses,
            "tower_calls": self.tower_calls,
            "size": len(self.cache),
        }

    # ------------------------------------------------------------------ preparation
    def _prepare(self, index: int, prompt: str, images: Sequence[Any], guide_text: str | None,
                 history: Sequence[tuple[str, str]], continuation: str | None, request_id: str | None) -> _Prepared:
        """Template, guide and tokens of one request; raises TGLlavaInputError naming the request."""
        name = f"request {request_id if request_id is not None else index}"
        try:
            if len(images) > 1:
                raise TGLlavaInputError(
                    f"{len(images)} images given; TG-LLaVA is a single-image model (one image per prompt)"
                )
            image = images[0] if images else None
            if not isinstance(prompt, str) or not prompt.strip():
                raise TGLlavaInputError("empty question")
            templated = self.processor.apply_template(prompt, has_image=image is not None, history=history)
            guide = guide_text if guide_text is not None else self.processor.inference_guide_text(prompt)
            if not guide.strip():
                raise TGLlavaInputError("empty guide text")
            ids = self.processor.tokenize_prompt(templated, has_image=image is not None)
            continuation_length = 0
            if continuation is not None:
                extra = self.processor.tokenize_continuation(continuation)
                ids = ids + extra
                continuation_length = len(extra)
            if self.max_length is not None and len(ids) >= self.max_length:
                raise TGLlavaInputError(
                    f"the prompt has {len(ids)} LLM tokens (image tokens included), at or over "
                    f"max_length={self.max_length}"
                )
            prepared = _Prepared(index, encode_sample(ids, self.processor.tokenize_guide(guide)),
                                 continuation_length=continuation_length)
            if image is not None:
                prepared.image_input = image
                prepared.image_name = describe_source(image, f"image of {name}")
                digest = image_digest(image) if self.cache_vision else None
                prepared.image_key = f"{self._fingerprint}:{digest}" if digest else None
                if prepared.image_key is None or self.cache.get(prepared.image_key) is None:
                    # Load now so that a bad image is reported for this request only.
                    prepared.image = self.processor.preprocess_image(image, source=prepared.image_name)
            return prepared
        except TGLlavaInputError as error:
            raise TGLlavaInputError(f"{name}: {error}") from error

    # ------------------------------------------------------------------ vision
    @torch.no_grad()
    def _image_features(self, batch: Sequence[_Prepared]) -> list[dict[str, torch.Tensor]] | None:
        """Per row, the vision features to put in its sample: ``patch_features [P, Dv]`` and (with
        TG-DP) ``crop_features [C, P, Dv]``, on the model's device, zeros for text-only rows;
        ``None`` when no row has an image (the model then runs without visual inputs)."""
        features: list[CachedFeatures | None] = [None] * len(batch)
        # Rows still to compute, deduplicated by cache key (several questions about one image in
        # one batch run the tower once); rows without a key are computed individually.
        pending: dict[str | int, list[int]] = {}
        for row, item in enumerate(batch):
            if not item.has_image:
                continue
            cached = self.cache.peek(item.image_key)
            if cached is not None:
                features[row] = cached
            else:
                pending.setdefault(item.image_key if item.image_key is not None else row, []).append(row)
        if pending:
            firsts = [rows[0] for rows in pending.values()]
            tensors = []
            for row in firsts:
                item = batch[row]
                if item.image is None:  # evicted since preparation: load it again
                    item.image = self.processor.preprocess_image(item.image_input, source=item.image_name)
                tensors.append(item.image)
            patch, crops = self.model.get_image_features(
                torch.stack([t.pixel_values for t in tensors]).to(self.device),
                torch.stack([t.crop_pixel_values for t in tensors]).to(self.device),
            )
            self.tower_calls += len(firsts)
            for i, rows in enumerate(pending.values()):
                value = CachedFeatures(patch[i], crops[i] if crops is not None else None)
                self.cache.put(batch[rows[0]].image_key, value)
                for row in rows:
                    features[row] = value
        template = next((f for f in features if f is not None), None)
        if template is None:
            return None
        rows = []
        for f in features:
            row = {"patch_features": (f.patch if f is not None else torch.zeros_like(template.patch)).to(self.device)}
            if template.crops is not None:
                row["crop_features"] = (f.crops if f is not None else torch.zeros_like(template.crops)).to(self.device)
            rows.append(row)
        return rows

    # ------------------------------------------------------------------ batching
    def _model_inputs(self, batch: Sequence[_Prepared], padding_side: str) -> dict[str, torch.Tensor]:
        """The processor's batch assembler over the encoded requests, with the cached vision
        features swapped in for pixels (``patch_features``/``crop_features``, zeros for
        text-only rows; absent when no row has an image) and ``position_ids``."""
        features = self._image_features(batch)
        samples = [{**item.sample, **(features[row] if features is not None else {})} for row, item in enumerate(batch)]
        inputs = self.processor.pad_batch(samples, padding_side=padding_side, position_ids=True)
        return {key: value.to(self.device) for key, value in inputs.items()}

    def _generation_kwargs(self, request: GenerationRequest) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": request.max_new_tokens or self.default_max_new_tokens,
            "num_beams": request.num_beams,
            "eos_token_id": self.processor.stop_token_ids,
            "pad_token_id": self.processor.pad_token_id,
        }
        if request.temperature and request.temperature > 0:
            kwargs.update(do_sample=True, temperature=request.temperature)
            if request.top_p is not None:
                kwargs["top_p"] = request.top_p
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kwargs

    def _cut(self, text: str, stops: Iterable[str]) -> str:
        cut = len(text)
        for stop in stops:
            if stop:
                position = text.find(stop)
                if position != -1:
                    cut = min(cut, position)
        return text[:cut].strip()

    @torch.no_grad()
    def _generate_batch(self, items: Sequence[tuple[_Prepared, GenerationRequest]]) -> list[GenerationResult]:
        prepared = [p for p, _ in items]
        request = items[0][1]
        inputs = self._model_inputs(prepared, "left")
        prompt_length = inputs["input_ids"].shape[1]
        output = self.model.generate(**inputs, **self._generation_kwargs(request))
        new_tokens = output[:, prompt_length:]
        results = []
        for row, (item, req) in enumerate(items):
            tokens = new_tokens[row].tolist()
            stops = set(self.processor.stop_token_ids) | {self.processor.pad_token_id}
            while tokens and tokens[-1] in stops:
                tokens.pop()
            text = self.processor.decode(tokens, skip_special_tokens=True)
            text = self._cut(text, list(req.stop) + self.processor.stop_strings)
            results.append(GenerationResult(text, None, item.num_tokens, len(tokens)))
        return results

    def generate(
        self, requests: Sequence[GenerationRequest], *, batch_size: int = 1
    ) -> list[GenerationResult]:
        """Answer ``requests``; the result list is aligned with the input.

        Args:
            requests: Generation requests.
            batch_size: Requests per model call (requests with different generation settings
                are never batched together).

        Returns:
            One :class:`GenerationResult` per request; a bad request has ``error`` set.
        """
        results: list[GenerationResult | None] = [None] * len(requests)
        groups: dict[tuple, list[tuple[_Prepared, GenerationRequest]]] = {}
        for index, request in enumerate(requests):
            try:
                prepared = self._prepare(index, request.prompt, list(request.images), request.guide_text,
                                         list(request.history), None, request.request_id)
            except TGLlavaInputError as error:
                logger.warning("%s", error)
                results[index] = GenerationResult("", str(error))
                continue
            key = (request.max_new_tokens, request.temperature, request.top_p, request.num_beams)
            groups.setdefault(key, []).append((prepared, request))
        for items in groups.values():
            for start in range(0, len(items), max(1, batch_size)):
                chunk = items[start:start + max(1, batch_size)]
                for (prepared, _), result in zip(chunk, self._generate_batch(chunk)):
                    results[prepared.index] = result
        failed = sum(1 for r in results if r is not None and r.error)
        if failed:
            logger.warning("%d of %d requests failed (see their error messages)", failed, len(requests))
        return results  # type: ignore[return-value]

    # ------------------------------------------------------------------ scoring
    @torch.no_grad()
    def _score_batch(self, batch: Sequence[_Prepared]) -> list[LoglikelihoodResult]:
        inputs = self._model_inputs(batch, "right")
        logits = self.model(**inputs).logits.float()  # [B, T, V]
        log_probs = torch.log_softmax(logits, dim=-1)
        results = []
        for row, item in enumerate(batch):
            end = item.num_tokens
            start = end - item.continuation_length
            targets = inputs["input_ids"][row, start:end]
            # Position t predicts token t + 1.
            step_log_probs = log_probs[row, start - 1:end - 1]
            token_log_probs = step_log_probs.gather(-1, targets[:, None]).squeeze(-1)
            greedy = bool((step_log_probs.argmax(-1) == targets).all())
            results.append(LoglikelihoodResult(float(token_log_probs.sum()), greedy, None, int(targets.numel())))
        return results

    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], *, batch_size: int = 1
    ) -> list[LoglikelihoodResult]:
        """Log-probability of each continuation as the assistant's answer, and whether greedy
        decoding would produce it.

        Args:
            requests: Scoring requests.
            batch_size: Requests per forward pass (right padding; scores do not depend on it).

        Returns:
            One :class:`LoglikelihoodResult` per request; a bad request has ``error`` set and
            ``logprob = -inf``.
        """
        results: list[LoglikelihoodResult | None] = [None] * len(requests)
        ready: list[_Prepared] = []
        for index, request in enumerate(requests):
            try:
                ready.append(self._prepare(index, request.prompt, list(request.images), request.guide_text,
                                           (), request.continuation, request.request_id))
            except TGLlavaInputError as error:
                logger.warning("%s", error)
                results[index] = LoglikelihoodResult(-math.inf, False, str(error))
        for start in range(0, len(ready), max(1, batch_size)):
            chunk = ready[start:start + max(1, batch_size)]
            for item, result in zip(chunk, self._score_batch(chunk)):
                results[item.index] = result
        return results  # type: ignore[return-value]


__all__ = ["TGLlavaEngine", "DEFAULT_MAX_NEW_TOKENS", "DEFAULT_CACHE_SIZE", "resolve_dtype"]
