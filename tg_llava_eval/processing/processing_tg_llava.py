"""``TGLlavaProcessor``: the one place where TG-LLaVA inputs are prepared (STYLE rule 7).

Training, the inference engine and both evaluation wrappers call this class; none of them
re-implements a step. It composes the single-job modules of this package:

* :mod:`.conversation` — the project's conversation templates and ``<image>`` marker rules;
* :mod:`.image_loading` / :mod:`.image_processing` — robust loading, pad to square, CLIP
  processing and the TG-DP crops;
* :mod:`.guide` — which text guides the vision side, its CLIP tokenisation (77) and padding;
* :mod:`.tokenization` — prompt tokenisation, ``<image>`` expansion and training labels.

Outputs (``BatchFeature``, all tensors): ``input_ids``/``attention_mask`` ``[B, L]`` (each
``<image>`` expanded to ``num_image_tokens`` copies of the image token id, llava-hf convention),
``pixel_values [B, 3, S, S]``, ``crop_pixel_values [B, C, 3, S, S]`` float32,
``guide_input_ids``/``guide_attention_mask`` ``[B, Lg]``, plus ``labels [B, L]`` for training and
scoring. TG-LLaVA is a single-image model: a prompt has exactly one ``<image>`` when it has an
image and none otherwise; text-only samples get a zero image (official behaviour).

Saved layout (``save_pretrained``; everything reloads offline): the LLM tokenizer at the root,
the guide tokenizer in ``guide_tokenizer/``, the image processor's ``preprocessor_config.json``,
and ``processor_config.json`` with the template name and the other settings. This is a plain class
rather than a ``transformers.ProcessorMixin``: it owns two tokenizers with different roles and
project templates, which ``ProcessorMixin``'s auto-loading does not model.
"""

from __future__ import annotations

import copy
import re
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from transformers import AutoTokenizer, BatchFeature
from transformers.image_processing_utils import BaseImageProcessor

from ..errors import TGLlavaCheckpointError, TGLlavaConfigError, TGLlavaInputError
from .conversation import (
    ASSISTANT,
    TEMPLATES,
    USER,
    ConversationTemplate,
    Message,
    Segment,
    count_image_markers,
    get_template,
    messages_from_llava,
    move_image_marker_to_front,
    strip_image_markers,
)
from .guide import GUIDE_PADDING_MODES, inference_guide_text, pad_guides, tokenize_guide, training_guide_text
from .image_loading import DEFAULT_MAX_IMAGE_PIXELS, ImageInput, describe_source
from .image_processing import IMAGE_PROCESSOR_BACKENDS, ImagePreprocessor, ImageTensors, build_clip_image_processor
from .tokenization import IGNORE_INDEX, encode, expand_image_tokens, tokenize_segments

logger = logging.getLogger(__name__)

#: File with the processor settings, next to the LLM tokenizer files.
PROCESSOR_CONFIG_NAME = "processor_config.json"
#: Sub-folder holding the guide (CLIP) tokenizer.
GUIDE_TOKENIZER_SUBFOLDER = "guide_tokenizer"
#: Value of ``processor_class`` in :data:`PROCESSOR_CONFIG_NAME`.
PROCESSOR_CLASS = "TGLlavaProcessor"
PADDING_SIDES = ("left", "right")


@dataclass
class TrainingSample:
    """One tokenised training sample (output of :meth:`TGLlavaProcessor.tokenize_training_sample`).

    Attributes:
        input_ids: LLM ids, image tokens expanded, length ``L <= max_length``.
        labels: Same length; :data:`IGNORE_INDEX` except on assistant answers and their end token.
        guide_text: The guide string (last human turn, markers removed, stripped).
        guide_input_ids: Its CLIP ids (at most ``guide_max_length``, EOS kept).
        has_image: Whether the sample has an image (``input_ids`` then holds the image tokens).
    """

    input_ids: list[int]
    labels: list[int]
    guide_text: str
    guide_input_ids: list[int]
    has_image: bool


def _prefix_error(error: TGLlavaInputError, prefix: str) -> TGLlavaInputError:
    """The same error type with ``prefix`` prepended to its message (keeps the cause chain)."""
    return type(error)(f"{prefix}: {error}")


def _pad(rows: Sequence[Sequence[int]], value: int, side: str) -> torch.Tensor:
    """Pad int lists to the longest on ``side`` → ``[B, L]`` int64."""
    length = max(len(row) for row in rows)
    out = torch.full((len(rows), length), value, dtype=torch.long)
    for index, row in enumerate(rows):
        if not row:
            continue
        values = torch.tensor(list(row), dtype=torch.long)
        if side == "left":
            out[index, length - len(row) :] = values
        else:
            out[index, : len(row)] = values
    return out


class TGLlavaProcessor:
    """Images, crops, conversation templates, guide text, tokenisation and labels for TG-LLaVA.

    Args:
        image_processor: CLIP image processor; ``CLIPImageProcessorPil`` reproduces the official
            PIL pipeline (see :func:`~.image_processing.build_clip_image_processor`).
        tokenizer: The LLM tokenizer; ``image_token`` must be one special token of it.
        guide_tokenizer: The guide tower's CLIP tokenizer (see
            :func:`~.tokenizers.build_guide_tokenizer`); needs eos and pad tokens.
        template: Conversation template name (``plain``, ``vicuna_v1``/``v1``, ``llama_3``,
            ``qwen_2``) or a :class:`ConversationTemplate`.
        num_image_tokens: LLM positions per image (``config.num_image_tokens``).
        crop_grid: TG-DP crops per side (``config.crop_grid``).
        guide_max_length: Guide tower positions (``config.guide_max_length``, 77 for CLIP).
        image_token: The image placeholder (``config.image_token``).
        crop_source: ``"upsampled"`` (official) or ``"original"``.
        guide_padding: ``"masked"`` (default) or ``"official"`` (see :mod:`.guide`).
        max_image_pixels: Pixel limit, checked on the header before decoding.

    Raises:
        TGLlavaConfigError: inconsistent settings (each message names the argument).
    """

    def __init__(
        self,
        image_processor: BaseImageProcessor,
        tokenizer,
        guide_tokenizer,
        *,
        template: str | ConversationTemplate,
        num_image_tokens: int,
        crop_grid: int,
        guide_max_length: int,
        image_token: str = "<image>",
        crop_source: str = "upsampled",
        guide_padding: str = "masked",
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    ) -> None:
        self.template = get_template(template)
        if num_image_tokens < 1:
            raise TGLlavaConfigError(f"num_image_tokens must be >= 1, got {num_image_tokens}")
        if guide_max_length < 2:
            raise TGLlavaConfigError(f"guide_max_length must be >= 2 (start and end tokens), got {guide_max_length}")
        if guide_padding not in GUIDE_PADDING_MODES:
            raise TGLlavaConfigError(f"guide_padding must be one of {GUIDE_PADDING_MODES}, got {guide_padding!r}")
        if max_image_pixels < 1:
            raise TGLlavaConfigError(f"max_image_pixels must be >= 1, got {max_image_pixels}")
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.guide_tokenizer = guide_tokenizer
        self.num_image_tokens = num_image_tokens
        self.guide_max_length = guide_max_length
        self.image_token = image_token
        self.guide_padding = guide_padding
        self.max_image_pixels = max_image_pixels
        self.image_preprocessor = ImagePreprocessor(
            image_processor, crop_grid=crop_grid, crop_source=crop_source, max_image_pixels=max_image_pixels
        )
        self.image_token_id = self._resolve_image_token_id()
        self.pad_token_id = self._resolve_pad_token_id()
        if guide_tokenizer.eos_token_id is None or guide_tokenizer.pad_token_id is None:
            raise TGLlavaConfigError("guide_tokenizer needs eos and pad tokens (CLIP: <|endoftext|>)")

    # ----------------------------------------------------------------------------------------
    # Construction, saving, loading
    # ----------------------------------------------------------------------------------------

    def _resolve_image_token_id(self) -> int:
        """The id of ``image_token``; it must encode to exactly that one id."""
        ids = self.tokenizer(self.image_token, add_special_tokens=False)["input_ids"]
        if len(ids) != 1 or ids[0] == self.tokenizer.unk_token_id:
            raise TGLlavaConfigError(
                f"image_token {self.image_token!r} must be a single special token of the LLM tokenizer "
                f"(it encodes to {ids}); add it with tokenizer.add_special_tokens"
            )
        return int(ids[0])

    def _resolve_pad_token_id(self) -> int:
        """The LLM pad id: the tokenizer's pad token, else its unk token (the official rule)."""
        for candidate in (self.tokenizer.pad_token_id, self.tokenizer.unk_token_id):
            if candidate is not None:
                return int(candidate)
        raise TGLlavaConfigError("the LLM tokenizer has neither a pad nor an unk token to pad with")

    @classmethod
    def from_config(
        cls,
        config: Any,
        tokenizer,
        guide_tokenizer,
        *,
        image_processor: BaseImageProcessor | None = None,
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    ) -> "TGLlavaProcessor":
        """Build the processor from a ``TGLlavaConfig`` (read by duck typing).

        Reads ``template``, ``num_image_tokens``, ``image_token``, ``crop_grid``, ``crop_source``,
        ``guide_max_length``, ``guide_padding``, ``image_size`` and checks ``image_token_id``
        against the tokenizer when the config sets it.

        Args:
            config: The model config (or any object with those attributes).
            tokenizer: LLM tokenizer.
            guide_tokenizer: CLIP guide tokenizer.
            image_processor: Defaults to the PIL CLIP processor at ``config.image_size``.
            max_image_pixels: Pixel limit for inputs.

        Returns:
            The processor.

        Raises:
            TGLlavaConfigError: a missing attribute, or ``config.image_token_id`` differing from
                the tokenizer's id of ``config.image_token``.
        """
        fields = (
            "template", "num_image_tokens", "image_token", "crop_grid", "crop_source",
            "guide_max_length", "guide_padding", "image_size",
        )
        missing = [name for name in fields if not hasattr(config, name)]
        if missing:
            raise TGLlavaConfigError(f"config lacks the processor fields {missing}")
        processor = cls(
            image_processor if image_processor is not None else build_clip_image_processor(config.image_size),
            tokenizer,
            guide_tokenizer,
            template=config.template,
            num_image_tokens=config.num_image_tokens,
            crop_grid=config.crop_grid,
            guide_max_length=config.guide_max_length,
            image_token=config.image_token,
            crop_source=config.crop_source,
            guide_padding=config.guide_padding,
            max_image_pixels=max_image_pixels,
        )
        if processor.image_size != config.image_size:
            raise TGLlavaConfigError(
                f"image processor crop size {processor.image_size} != config.image_size {config.image_size}"
            )
        configured_id = getattr(config, "image_token_id", None)
        if configured_id is not None and configured_id != processor.image_token_id:
            raise TGLlavaConfigError(
                f"config.image_token_id={configured_id} but the tokenizer encodes {config.image_token!r} "
                f"as {processor.image_token_id}"
            )
        return processor

    def to_dict(self) -> dict[str, Any]:
        """The settings written to ``processor_config.json``.

        Raises:
            TGLlavaConfigError: the template is a custom object, not a registered template.
        """
        if TEMPLATES.get(self.template.name) != self.template:
            raise TGLlavaConfigError(f"cannot save a processor with the unregistered template {self.template.name!r}")
        return {
            "processor_class": PROCESSOR_CLASS,
            "template": self.template.name,
            "num_image_tokens": self.num_image_tokens,
            "image_token": self.image_token,
            "crop_grid": self.image_preprocessor.crop_grid,
            "crop_source": self.image_preprocessor.crop_source,
            "guide_max_length": self.guide_max_length,
            "guide_padding": self.guide_padding,
            "max_image_pixels": self.max_image_pixels,
            "image_processor_backend": self.image_processor.backend,
            "guide_tokenizer_subfolder": GUIDE_TOKENIZER_SUBFOLDER,
        }

    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """Write the processor (tokenizers, image processor config, settings) to a folder.

        Args:
            save_directory: Target folder (created if needed); a model checkpoint folder is fine.

        Returns:
            The folder path.
        """
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        settings = self.to_dict()
        self.tokenizer.save_pretrained(directory)
        self.guide_tokenizer.save_pretrained(directory / GUIDE_TOKENIZER_SUBFOLDER)
        self.image_processor.save_pretrained(directory)
        (directory / PROCESSOR_CONFIG_NAME).write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return directory

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> "TGLlavaProcessor":
        """Load a processor written by :meth:`save_pretrained` (local files only, no hub).

        Raises:
            TGLlavaCheckpointError: missing or malformed ``processor_config.json``, unknown keys
                or an unknown image-processor backend.
        """
        directory = Path(path)
        config_file = directory / PROCESSOR_CONFIG_NAME
        if not config_file.is_file():
            raise TGLlavaCheckpointError(f"no {PROCESSOR_CONFIG_NAME} in {directory}")
        try:
            settings = json.loads(config_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise TGLlavaCheckpointError(f"{config_file} is not valid JSON: {error}") from error
        expected = {
            "processor_class", "template", "num_image_tokens", "image_token", "crop_grid", "crop_source",
            "guide_max_length", "guide_padding", "max_image_pixels", "image_processor_backend",
            "guide_tokenizer_subfolder",
        }
        if settings.get("processor_class") != PROCESSOR_CLASS or set(settings) != expected:
            raise TGLlavaCheckpointError(
                f"{config_file}: expected processor_class {PROCESSOR_CLASS!r} and keys {sorted(expected)}; "
                f"unknown {sorted(set(settings) - expected)}, missing {sorted(expected - set(settings))}"
            )
        backend = settings["image_processor_backend"]
        if backend not in IMAGE_PROCESSOR_BACKENDS:
            raise TGLlavaCheckpointError(f"{config_file}: unknown image_processor_backend {backend!r}")
        image_processor = IMAGE_PROCESSOR_BACKENDS[backend].from_pretrained(directory, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        guide_tokenizer = AutoTokenizer.from_pretrained(directory / settings["guide_tokenizer_subfolder"], local_files_only=True)
        return cls(
            image_processor,
            tokenizer,
            guide_tokenizer,
            template=settings["template"],
            num_image_tokens=settings["num_image_tokens"],
            crop_grid=settings["crop_grid"],
            guide_max_length=settings["guide_max_length"],
            image_token=settings["image_token"],
            crop_source=settings["crop_source"],
            guide_padding=settings["guide_padding"],
            max_image_pixels=settings["max_image_pixels"],
        )

    # ----------------------------------------------------------------------------------------
    # Small accessors
    # ----------------------------------------------------------------------------------------

    @property
    def image_size(self) -> int:
        """``S``, the side of ``pixel_values`` and of each crop."""
        return self.image_preprocessor.image_size

    @property
    def crop_grid(self) -> int:
        """Crops per side."""
        return self.image_preprocessor.crop_grid

    @property
    def crop_source(self) -> str:
        """``"upsampled"`` or ``"original"``."""
        return self.image_preprocessor.crop_source

    @property
    def num_crops(self) -> int:
        """``crop_grid ** 2``."""
        return self.image_preprocessor.num_crops

    @property
    def stop_strings(self) -> list[str]:
        """Strings that end an answer: the template's end separator (``</s>``, ``<|im_end|>``, ...)."""
        return [self.template.stop_text]

    @property
    def stop_token_ids(self) -> list[int]:
        """Token ids that end generation: the tokenizer's EOS and the template's end token when
        it is a single vocabulary token (e.g. ``<|im_end|>``, ``<|eot_id|>``)."""
        ids = set()
        if self.tokenizer.eos_token_id is not None:
            ids.add(int(self.tokenizer.eos_token_id))
        stop_id = self.tokenizer.convert_tokens_to_ids(self.template.stop_text)
        if isinstance(stop_id, int) and stop_id != self.tokenizer.unk_token_id:
            ids.add(stop_id)
        return sorted(ids)

    def decode(self, token_ids, skip_special_tokens: bool = True, **kwargs) -> str:
        """Decode one sequence with the LLM tokenizer (special tokens skipped by default)."""
        return self.tokenizer.decode(token_ids, skip_special_tokens=skip_special_tokens, **kwargs)

    def batch_decode(self, sequences, skip_special_tokens: bool = True, **kwargs) -> list[str]:
        """Decode a batch ``[B, L]`` (tensor or lists) with the LLM tokenizer."""
        return self.tokenizer.batch_decode(sequences, skip_special_tokens=skip_special_tokens, **kwargs)

    # ----------------------------------------------------------------------------------------
    # Inference-side text
    # ----------------------------------------------------------------------------------------

    def apply_template(self, question: str, *, has_image: bool, history: Sequence[tuple[str, str]] = ()) -> str:
        """Render a generation prompt (ends with the assistant header) with the project template.

        Image marker rules: with ``has_image``, a question/turn without a marker gets
        ``"<image>\\n"`` at the front of the first user turn (the official runner's convention), and
        a marker placed anywhere in a user turn is moved to the front of that turn (the official
        ``preprocess_multimodal``; the turn is stripped in both cases, as in training).

        Args:
            question: The current user message (may contain one ``<image>``).
            has_image: Whether an image goes with the conversation.
            history: Previous ``(user, assistant)`` turns, oldest first; the image belongs to the
                first user turn unless a marker is placed elsewhere.

        Returns:
            The templated prompt string, e.g. for ``qwen_2``:
            ``"<|im_start|>system\\n...<|im_end|><|im_start|>user\\n<image>\\nQ<|im_end|><|im_start|>assistant\\n"``.

        Raises:
            TGLlavaInputError: empty question or history turn, more than one marker, a marker
                without an image, a marker in an assistant turn, or (``plain``) any history.
        """
        turns: list[Message] = []
        for user_text, assistant_text in history:
            turns += [Message(USER, user_text), Message(ASSISTANT, assistant_text)]
        turns.append(Message(USER, question))
        for index, turn in enumerate(turns):
            if turn.role == USER and not strip_image_markers(turn.text, self.image_token):
                raise TGLlavaInputError(f"empty question in user turn {index // 2}: {turn.text!r}")
            if turn.role == ASSISTANT and self.image_token in turn.text:
                raise TGLlavaInputError(f"assistant turn {index // 2} contains {self.image_token!r}")
        turns = self._place_image_marker(turns, has_image=has_image)
        return self.template.render(turns, add_generation_prompt=True, image_token=self.image_token)

    def _place_image_marker(self, turns: list[Message], *, has_image: bool) -> list[Message]:
        """Validate the marker count (0 without image, at most 1 with) and move/insert the marker."""
        counts = [count_image_markers(turn.text, self.image_token) for turn in turns]
        total = sum(counts)
        if not has_image:
            if total:
                raise TGLlavaInputError(f"the text has {total} {self.image_token!r} marker(s) but no image was given")
            return turns
        if total > 1:
            raise TGLlavaInputError(
                f"the text has {total} {self.image_token!r} markers; TG-LLaVA takes exactly one image per prompt"
            )
        target = counts.index(1) if total else 0
        placed = list(turns)
        text = turns[target].text if total else self.image_token + "\n" + turns[target].text
        placed[target] = Message(turns[target].role, move_image_marker_to_front(text, self.image_token))
        return placed

    def inference_guide_text(self, question: str) -> str:
        """The guide of an inference request: the question without markers, stripped (official runner).

        Raises:
            TGLlavaInputError: empty question.
        """
        return inference_guide_text(question, self.image_token)

    def build_inputs(
        self,
        question: str,
        image: ImageInput | None = None,
        *,
        history: Sequence[tuple[str, str]] = (),
        guide_text: str | None = None,
    ) -> BatchFeature:
        """One-sample convenience: template + guide rule + :meth:`__call__`.

        Args:
            question: The user message (see :meth:`apply_template`).
            image: PIL image, path, bytes or ``None``.
            history: Previous ``(user, assistant)`` turns.
            guide_text: Defaults to :meth:`inference_guide_text` of ``question``.

        Returns:
            The model inputs of a batch of one (see :meth:`__call__`).
        """
        prompt = self.apply_template(question, has_image=image is not None, history=history)
        guide = guide_text if guide_text is not None else self.inference_guide_text(question)
        return self([prompt], [image], [guide])

    # ----------------------------------------------------------------------------------------
    # Tensors
    # ----------------------------------------------------------------------------------------

    def tokenize_continuation(self, continuation: str) -> list[int]:
        """LLM ids of a text scored after a prompt (log-likelihood), without special tokens.

        The continuation is tokenised on its own and appended to the prompt's ids, so the prompt
        keeps exactly the tokens generation sees (no BPE merge across the boundary); the engine
        and :meth:`__call__` both use this.

        Raises:
            TGLlavaInputError: an empty continuation, or one holding an image marker.
        """
        if not isinstance(continuation, str) or not continuation or self.image_token in continuation:
            raise TGLlavaInputError(f"bad continuation {continuation!r} (empty or with an image marker)")
        return list(self.tokenizer(continuation, add_special_tokens=False)["input_ids"])

    def tokenize_prompt(self, prompt: str, *, has_image: bool) -> list[int]:
        """Tokenise a templated prompt and expand its image token.

        Args:
            prompt: An already-templated string.
            has_image: Whether an image goes with it (then exactly one marker is required).

        Returns:
            LLM ids with the single ``<image>`` expanded to ``num_image_tokens`` ids.

        Raises:
            TGLlavaInputError: wrong marker count for ``has_image``, or the marker not encoded as
                the image token.
        """
        markers = count_image_markers(prompt, self.image_token)
        expected = 1 if has_image else 0
        if markers != expected:
            image_words = "1 image" if has_image else "no image"
            raise TGLlavaInputError(
                f"the prompt has {markers} {self.image_token!r} marker(s) and {image_words}; TG-LLaVA needs "
                f"exactly one marker per image and one image per prompt: {prompt[:80]!r}"
            )
        ids = encode(self.tokenizer, prompt)
        if ids.count(self.image_token_id) != markers:
            raise TGLlavaInputError(f"the tokenizer did not encode {self.image_token!r} as its special token: {prompt[:80]!r}")
        return expand_image_tokens(ids, self.image_token_id, self.num_image_tokens)[0]

    def tokenize_guide(self, text: str) -> list[int]:
        """CLIP ids of a guide text, cut to ``guide_max_length`` with the EOS kept (see :mod:`.guide`)."""
        return tokenize_guide(self.guide_tokenizer, text, self.guide_max_length)

    def pad_guides(self, guides: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """``guide_input_ids`` and ``guide_attention_mask`` ``[B, Lg]`` in the configured mode."""
        return pad_guides(guides, int(self.guide_tokenizer.pad_token_id), self.guide_padding)

    def preprocess_image(self, image: ImageInput | None, *, source: str | None = None) -> ImageTensors:
        """``pixel_values [3, S, S]`` and ``crop_pixel_values [C, 3, S, S]`` of one image (zeros for ``None``).

        Raises:
            TGLlavaInputError: unreadable, corrupt, empty or oversized image (names the source).
        """
        return self.image_preprocessor(image, source=source)

    def pad_input_ids(self, rows: Sequence[Sequence[int]], side: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Pad already-tokenised LLM rows (e.g. from :meth:`tokenize_prompt`) into ``input_ids`` and
        ``attention_mask`` ``[B, L]``, on ``side`` (``"left"`` for generation)."""
        if side not in PADDING_SIDES:
            raise TGLlavaInputError(f"padding side must be one of {PADDING_SIDES}, got {side!r}")
        return self._pad_llm(rows, side)

    def with_template(self, template: str) -> "TGLlavaProcessor":
        """A copy of this processor that renders prompts with another conversation template.

        Raises:
            TGLlavaConfigError: The template's end-of-turn text is not a token of the tokenizer.
        """
        new_template = get_template(template)
        stop_id = self.tokenizer.convert_tokens_to_ids(new_template.stop_text)
        is_special_text = re.fullmatch(r"<[^<>\s]+>", new_template.stop_text or "") is not None
        if is_special_text and (stop_id is None or stop_id == self.tokenizer.unk_token_id):
            raise TGLlavaConfigError(
                f"template {new_template.name!r} ends turns with {new_template.stop_text!r}, which is not a "
                "token of this LLM tokenizer: the template belongs to another LLM family"
            )
        clone = copy.copy(self)
        clone.template = new_template
        return clone

    def _pad_llm(self, rows: Sequence[Sequence[int]], side: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``input_ids`` padded with the pad id and the attention mask, ``[B, L]``."""
        input_ids = _pad(rows, self.pad_token_id, side)
        attention_mask = _pad([[1] * len(row) for row in rows], 0, side)
        return input_ids, attention_mask

    def __call__(
        self,
        prompts: Sequence[str] | str,
        images: Sequence[ImageInput | None] | None = None,
        guide_texts: Sequence[str] | str | None = None,
        *,
        padding_side: str = "left",
        continuations: Sequence[str] | None = None,
    ) -> BatchFeature:
        """Build the model inputs of a batch.

        Args:
            prompts: Already-templated strings (see :meth:`apply_template`), one per sample.
            images: One entry per prompt: PIL image, path, bytes or ``None`` (text-only sample,
                zero image). ``None`` = no images at all.
            guide_texts: One guide per prompt (see :meth:`inference_guide_text`). Required.
            padding_side: ``"left"`` for generation, ``"right"`` for scoring/training.
            continuations: Optional texts scored after each prompt (log-likelihood): appended as
                their own tokens (no special tokens) and returned as ``labels``, with
                :data:`IGNORE_INDEX` on the prompt and on pads.

        Returns:
            ``BatchFeature`` with ``input_ids [B, L]``, ``attention_mask [B, L]`` (int64),
            ``pixel_values [B, 3, S, S]``, ``crop_pixel_values [B, C, 3, S, S]`` (float32),
            ``guide_input_ids [B, Lg]``, ``guide_attention_mask [B, Lg]`` (int64), and ``labels
            [B, L]`` when ``continuations`` is given.

        Raises:
            TGLlavaInputError: mismatched list lengths, a marker/image mismatch, an empty guide or
                a bad image; the message starts with ``sample <index>``.
        """
        if isinstance(prompts, str):
            prompts = [prompts]
        if isinstance(guide_texts, str):
            guide_texts = [guide_texts]
        count = len(prompts)
        if count == 0:
            raise TGLlavaInputError("no prompts given")
        images = [None] * count if images is None else list(images)
        if guide_texts is None:
            raise TGLlavaInputError("guide_texts is required (use processor.inference_guide_text(question))")
        if padding_side not in PADDING_SIDES:
            raise TGLlavaInputError(f"padding_side must be one of {PADDING_SIDES}, got {padding_side!r}")
        lengths = {"images": len(images), "guide_texts": len(guide_texts)}
        if continuations is not None:
            lengths["continuations"] = len(continuations)
        for name, length in lengths.items():
            if length != count:
                raise TGLlavaInputError(f"{name} has {length} entries but there are {count} prompts")

        sequences, label_rows, guides, tensors = [], [], [], []
        for index, (prompt, image, guide) in enumerate(zip(prompts, images, guide_texts)):
            try:
                ids = self.tokenize_prompt(prompt, has_image=image is not None)
                labels = [IGNORE_INDEX] * len(ids)
                if continuations is not None:
                    continuation_ids = self.tokenize_continuation(continuations[index])
                    ids, labels = ids + continuation_ids, labels + continuation_ids
                guides.append(self.tokenize_guide(guide))
                source = describe_source(image, f"image of sample {index}") if image is not None else None
                tensors.append(self.preprocess_image(image, source=source))
            except TGLlavaInputError as error:
                raise _prefix_error(error, f"sample {index}") from error
            sequences.append(ids)
            label_rows.append(labels)

        input_ids, attention_mask = self._pad_llm(sequences, padding_side)
        guide_input_ids, guide_attention_mask = self.pad_guides(guides)
        data = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "pixel_values": torch.stack([t.pixel_values for t in tensors]),
            "crop_pixel_values": torch.stack([t.crop_pixel_values for t in tensors]),
            "guide_input_ids": guide_input_ids,
            "guide_attention_mask": guide_attention_mask,
        }
        if continuations is not None:
            data["labels"] = _pad(label_rows, IGNORE_INDEX, padding_side)
        return BatchFeature(data=data)

    # ----------------------------------------------------------------------------------------
    # Training
    # ----------------------------------------------------------------------------------------

    def training_segments(self, conversations: Sequence[dict], has_image: bool) -> list[Segment]:
        """Validate a LLaVA-format sample and render it into labelled template segments.

        The official steps before tokenisation: ``<image>`` is moved to the front of its turn
        (``preprocess_multimodal``), then the template renders the turns (``plain`` replaces the
        human text by the marker). ``"".join(s.text for s in segments)`` is the exact string the
        official training code tokenizes (golden-tested).

        Args:
            conversations: ``[{"from": "human"|"gpt", "value": str}, ...]``, alternating, starting
                with ``human`` and ending with ``gpt``.
            has_image: Whether the sample has an image (exactly one ``<image>`` marker, in a human
                turn, then; none otherwise).

        Returns:
            The segments, supervised ones being the answers with their end separators.

        Raises:
            TGLlavaInputError: empty conversation, unknown role (named with its index), wrong turn
                order, empty question, marker/image mismatch, ``plain`` with more than one exchange.
        """
        messages = messages_from_llava(conversations)
        for index, message in enumerate(messages):
            if message.role == USER and not strip_image_markers(message.text, self.image_token):
                raise TGLlavaInputError(f"empty question in human turn {index}: {message.text!r}")
        counts = [count_image_markers(message.text, self.image_token) for message in messages]
        expected = 1 if has_image else 0
        if sum(counts) != expected or (has_image and messages[counts.index(1)].role != USER):
            raise TGLlavaInputError(
                f"the sample has {sum(counts)} {self.image_token!r} marker(s) with has_image={has_image}; "
                "expected exactly one marker in a human turn with an image and none without"
            )
        if has_image:
            target = counts.index(1)
            messages[target] = Message(USER, move_image_marker_to_front(messages[target].text, self.image_token))
        return self.template.segments(messages, add_generation_prompt=False, image_token=self.image_token)

    def tokenize_training_sample(
        self,
        conversations: Sequence[dict],
        has_image: bool,
        max_length: int | None = None,
    ) -> TrainingSample:
        """Tokenise one LLaVA-format training sample with labels and its guide.

        Steps (official rules, reference §4.2, §5, §6): :meth:`training_segments`; the guide from
        the raw last human turn; tokenisation of the segments with the in-context prefix check
        (:func:`tokenize_segments`); image-token expansion; truncation to ``max_length`` *after*
        the expansion (as the official code).

        Args:
            conversations: ``[{"from": "human"|"gpt", "value": str}, ...]`` (see
                :meth:`training_segments`).
            has_image: Whether the sample has an image.
            max_length: Longest ``input_ids`` kept (``None`` = no limit).

        Returns:
            A :class:`TrainingSample`.

        Raises:
            LabelMismatchError: a segment boundary splits a token (skip and count the sample).
            TGLlavaInputError: everything :meth:`training_segments` rejects, truncation inside the
                image tokens, or no supervised token left.
        """
        segments = self.training_segments(conversations, has_image)
        guide_text = training_guide_text(conversations, self.image_token)
        input_ids, labels = tokenize_segments(self.tokenizer, segments)
        expected = 1 if has_image else 0
        if input_ids.count(self.image_token_id) != expected:
            raise TGLlavaInputError(f"the tokenizer did not encode {self.image_token!r} as its special token")
        input_ids, labels = expand_image_tokens(input_ids, self.image_token_id, self.num_image_tokens, labels)
        if max_length is not None and len(input_ids) > max_length:
            if has_image and input_ids.index(self.image_token_id) + self.num_image_tokens > max_length:
                raise TGLlavaInputError(f"max_length={max_length} cuts into the image tokens; sample skipped")
            input_ids, labels = input_ids[:max_length], labels[:max_length]
        if all(label == IGNORE_INDEX for label in labels):
            raise TGLlavaInputError("no supervised token left (answer empty or truncated away by max_length)")
        return TrainingSample(
            input_ids=input_ids,
            labels=labels,
            guide_text=guide_text,
            guide_input_ids=self.tokenize_guide(guide_text),
            has_image=has_image,
        )

    def collate_training(
        self,
        samples: Sequence[TrainingSample],
        images: Sequence[ImageTensors | None],
        *,
        padding_side: str = "right",
    ) -> BatchFeature:
        """Batch tokenised samples and their processed images for the training loss.

        Args:
            samples: From :meth:`tokenize_training_sample`.
            images: Aligned with ``samples``: :meth:`preprocess_image` output for image samples,
                ``None`` for text-only ones (zero image).
            padding_side: ``"right"`` (the official collator) or ``"left"``.

        Returns:
            ``BatchFeature`` with ``input_ids``, ``attention_mask``, ``labels`` ``[B, L]`` (pads:
            pad id / 0 / :data:`IGNORE_INDEX`), ``pixel_values [B, 3, S, S]``,
            ``crop_pixel_values [B, C, 3, S, S]``, ``guide_input_ids``/``guide_attention_mask``
            ``[B, Lg]``.

        Raises:
            TGLlavaInputError: empty batch, misaligned lists or an image given/missing against
                ``has_image`` (named by index).
        """
        if not samples or len(samples) != len(images):
            raise TGLlavaInputError(f"collate_training: {len(samples)} samples and {len(images)} images")
        if padding_side not in PADDING_SIDES:
            raise TGLlavaInputError(f"padding_side must be one of {PADDING_SIDES}, got {padding_side!r}")
        tensors = []
        for index, (sample, image) in enumerate(zip(samples, images)):
            if sample.has_image != (image is not None):
                raise TGLlavaInputError(f"sample {index}: has_image={sample.has_image} but image is {type(image).__name__}")
            tensors.append(image if image is not None else self.image_preprocessor.zeros())
        input_ids, attention_mask = self._pad_llm([s.input_ids for s in samples], padding_side)
        guide_input_ids, guide_attention_mask = self.pad_guides([s.guide_input_ids for s in samples])
        return BatchFeature(
            data={
                "input_ids": input_ids,
                "attention_mask": attention_mask,
                "labels": _pad([s.labels for s in samples], IGNORE_INDEX, padding_side),
                "pixel_values": torch.stack([t.pixel_values for t in tensors]),
                "crop_pixel_values": torch.stack([t.crop_pixel_values for t in tensors]),
                "guide_input_ids": guide_input_ids,
                "guide_attention_mask": guide_attention_mask,
            }
        )
