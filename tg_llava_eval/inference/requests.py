"""Request and result records of the inference engine.

Both evaluation wrappers (VLMEvalKit, lmms-eval) and the chat CLI speak to
:class:`tg_llava_eval.inference.TGLlavaEngine` only through these records, so that the
toolkit-specific code never touches tensors, tokenizers or templates.

A request whose input is bad (missing/corrupt image, empty question, ...) does not raise: the engine
returns a result with ``error`` set to a message naming the input, and the rest of the batch runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..processing.image_loading import ImageInput


@dataclass
class GenerationRequest:
    """One generation call.

    Attributes:
        prompt: The user message of the current turn, *without* the conversation template. It may
            contain ``<image>`` markers; when ``images`` is non-empty and the prompt has no marker,
            ``"<image>\\n"`` is prepended (the official runner's behaviour).
        images: At most one image (TG-LLaVA is a single-image model); more is reported as an error.
        guide_text: The text that guides the vision side (TG-FOM / TG-DP). ``None`` means the
            prompt with image markers removed and outer whitespace stripped (official rule).
        history: Previous turns as ``(user, assistant)`` pairs, oldest first (multi-round chat).
            The image, if any, belongs to the first user turn.
        max_new_tokens: ``None`` = the engine's default.
        temperature: 0 means greedy decoding.
        top_p: Nucleus sampling threshold when sampling.
        num_beams: Beam search width (1 = no beam search).
        stop: Strings that end the answer; the answer is cut before the first one found.
        request_id: Free-form identifier echoed in error messages (row index, doc id, ...).
    """

    prompt: str
    images: Sequence[ImageInput] = ()
    guide_text: str | None = None
    history: Sequence[tuple[str, str]] = ()
    max_new_tokens: int | None = None
    temperature: float = 0.0
    top_p: float | None = None
    num_beams: int = 1
    stop: Sequence[str] = ()
    request_id: str | None = None


@dataclass
class GenerationResult:
    """The answer to a :class:`GenerationRequest`.

    Attributes:
        text: The decoded answer ("" when ``error`` is set).
        error: ``None`` on success, otherwise a message naming the bad input.
        num_prompt_tokens: Prompt length in LLM tokens, image tokens included.
        num_generated_tokens: Number of new tokens produced.
    """

    text: str
    error: str | None = None
    num_prompt_tokens: int = 0
    num_generated_tokens: int = 0


@dataclass
class LoglikelihoodRequest:
    """Score ``continuation`` as the assistant's answer to ``prompt`` (same fields as generation)."""

    prompt: str
    continuation: str
    images: Sequence[ImageInput] = ()
    guide_text: str | None = None
    request_id: str | None = None


@dataclass
class LoglikelihoodResult:
    """Sum of the continuation tokens' log-probabilities and whether greedy decoding yields it.

    Attributes:
        logprob: ``sum_t log p(continuation_t | prompt, continuation_<t)`` (natural log).
        is_greedy: True when every continuation token is the argmax at its position.
        error: ``None`` on success, otherwise a message naming the bad input
            (``logprob`` is then ``-inf`` and ``is_greedy`` False).
    """

    logprob: float
    is_greedy: bool
    error: str | None = None
    num_tokens: int = field(default=0)
