"""``TGLlavaProcessor``: the one place where TG-LLaVA inputs are prepared.

Training, the inference engine and both evaluation wrappers call this class; none of them
re-implements a step. It composes the single-job modules of this package:

* :mod:`tg_llava_eval.conversation` — the project's conversation templates and ``<image>`` marker rules;
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

Batches are built by the one encode-one / pad-many pair of :mod:`.batching`
(:meth:`TGLlavaProcessor.encode_prompt` / :func:`~.batching.encode_sample`, then
:meth:`TGLlavaProcessor.pad_batch`), which training collation and the inference engine use too.

The class is a ``transformers.ProcessorMixin`` with three sub-processors, found by the mixin from
the ``__init__`` argument names as in ``InstructBlipProcessor``: ``image_processor``,
``tokenizer`` (the LLM's) and ``guide_tokenizer`` (the guide tower's CLIP tokenizer). Importing
:mod:`tg_llava_eval.processing` registers it with ``AutoProcessor`` for ``model_type="tg_llava"``,
so ``AutoProcessor.from_pretrained(dir)`` returns it (no ``trust_remote_code``).

Saved layout (``save_pretrained``; the same files as before the class became a ``ProcessorMixin``,
so older folders load unchanged): the LLM tokenizer at the root, the guide tokenizer in
``guide_tokenizer/`` (the mixin's folder for a second tokenizer: the attribute name), the image
processor's ``preprocessor_config.json``, and ``processor_config.json`` with ``processor_class``,
the template name and the other settings (flat keys, read strictly). The tokenizers'
``tokenizer_config.json`` now also records ``processor_class`` (the mixin writes it; loading
ignores it).

What is the mixin's and what is ours: saving the tokenizers, ``processor_config.json`` and
``AutoProcessor``'s dispatch are the mixin's. ``from_pretrained`` is ours, for two reasons in
transformers 5.x: ``preprocessor_config.json`` names ``CLIPImageProcessor`` for both image
backends, so the mixin's ``AutoImageProcessor`` would load the torchvision backend for a
PIL-saved processor and change the pixels (the backend is recorded in ``processor_config.json``
and dispatched here); and the mixin's ``from_args_and_dict`` passes only positional-or-keyword
``__init__`` arguments, while the settings are keyword-only here. ``to_dict`` returns the flat
settings, ``__call__`` keeps the project's signature (prompts, images, guide texts).
"""

from __future__ import annotations

import copy
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, BatchFeature, ProcessorMixin
from transformers.image_processing_utils import BaseImageProcessor

from ..conversation import (
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
from ..errors import TGLlavaCheckpointError, TGLlavaConfigError, TGLlavaInputError
from .batching import PADDING_SIDES, encode_sample, pad_batch, pad_sequences
from .guide import GUIDE_PADDING_MODES, inference_guide_text, pad_guides, tokenize_guide, training_guide_text
from .image_loading import DEFAULT_MAX_IMAGE_PIXELS, ImageInput, describe_source
from .image_processing import (
    DEFAULT_VISION_MODEL_TYPE,
    IMAGE_PROCESSOR_BACKENDS,
    ImagePreprocessor,
    ImageTensors,
    build_image_processor,
)
from .tokenization import IGNORE_INDEX, encode, expand_image_tokens, tokenize_segments

logger = logging.getLogger(__name__)

#: File with the processor settings, next to the LLM tokenizer files.
PROCESSOR_CONFIG_NAME = "processor_config.json"
#: Sub-folder holding the guide (CLIP) tokenizer.
GUIDE_TOKENIZER_SUBFOLDER = "guide_tokenizer"
#: Value of ``processor_class`` in :data:`PROCESSOR_CONFIG_NAME`.
PROCESSOR_CLASS = "TGLlavaProcessor"
#: The keys of :data:`PROCESSOR_CONFIG_NAME` (read strictly: unknown or missing keys are errors).
PROCESSOR_CONFIG_KEYS = frozenset({
    "processor_class", "template", "num_image_tokens", "image_token", "crop_grid", "crop_source",
    "guide_max_length", "guide_padding", "max_image_pixels", "image_processor_backend",
    "guide_tokenizer_subfolder",
})
#: Keys written only when not at their default, so that folders of the CLIP presets keep their
#: bytes (``guide_pad_to_max_length``: SigLIP guides, default False).
PROCESSOR_CONFIG_OPTIONAL_KEYS = frozenset({"guide_pad_to_max_length"})
#: ``from_pretrained`` keyword arguments that locate files (passed to every sub-loader).
_HUB_KWARGS = ("cache_dir", "force_download", "proxies", "token", "revision", "local_files_only", "subfolder")
#: Keyword arguments ``AutoProcessor.from_pretrained`` adds; they do not apply here.
_AUTO_KWARGS = ("trust_remote_code", "_from_auto", "_from_pipeline")


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


class TGLlavaProcessor(ProcessorMixin):
    """Images, crops, conversation templates, guide text, tokenisation and labels for TG-LLaVA.

    A ``transformers.ProcessorMixin`` (see the module docstring for which parts are the mixin's):
    ``AutoProcessor.from_pretrained(dir)`` works after ``import tg_llava_eval.processing``.

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
        guide_pad_to_max_length: Pad every guide to ``guide_max_length`` (SigLIP's
            ``padding="max_length"``, ``config.guide_pad_to_max_length``); False pads to the
            batch's longest (CLIP).

    Raises:
        TGLlavaConfigError: inconsistent settings (each message names the argument).
        TypeError: a sub-processor of the wrong kind (the mixin's check: an image processor and
            two ``PreTrainedTokenizerBase`` tokenizers).
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
        guide_pad_to_max_length: bool = False,
    ) -> None:
        # The mixin checks the three sub-processors' types and sets them as attributes.
        super().__init__(image_processor, tokenizer, guide_tokenizer)
        self.template = get_template(template)
        if num_image_tokens < 1:
            raise TGLlavaConfigError(f"num_image_tokens must be >= 1, got {num_image_tokens}")
        if guide_max_length < 2:
            raise TGLlavaConfigError(f"guide_max_length must be >= 2 (start and end tokens), got {guide_max_length}")
        if guide_padding not in GUIDE_PADDING_MODES:
            raise TGLlavaConfigError(f"guide_padding must be one of {GUIDE_PADDING_MODES}, got {guide_padding!r}")
        if max_image_pixels < 1:
            raise TGLlavaConfigError(f"max_image_pixels must be >= 1, got {max_image_pixels}")
        self.num_image_tokens = num_image_tokens
        self.guide_max_length = guide_max_length
        self.image_token = image_token
        self.guide_padding = guide_padding
        self.guide_pad_to_max_length = bool(guide_pad_to_max_length)
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
    ) -> TGLlavaProcessor:
        """Build the processor from a ``TGLlavaConfig`` (read by duck typing).

        Reads ``template``, ``num_image_tokens``, ``image_token``, ``crop_grid``, ``crop_source``,
        ``guide_max_length``, ``guide_padding``, ``image_size`` and checks ``image_token_id``
        against the tokenizer when the config sets it. A ``TGLlavaConfig`` also gives
        ``guide_pad_to_max_length`` and ``vision_config.model_type`` (the image constants); an
        object without them is read as the official CLIP towers.

        Args:
            config: The model config (or any object with those attributes).
            tokenizer: LLM tokenizer.
            guide_tokenizer: CLIP guide tokenizer.
            image_processor: Defaults to the PIL processor at ``config.image_size`` with the vision
                tower family's mean/std (:func:`~.image_processing.build_image_processor`).
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
        # Duck-typed configs without towers (tests, older callers) are the official CLIP pair.
        vision_config = getattr(config, "vision_config", None)
        vision_model_type = getattr(vision_config, "model_type", DEFAULT_VISION_MODEL_TYPE)
        processor = cls(
            image_processor if image_processor is not None else build_image_processor(config.image_size, vision_model_type),
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
            guide_pad_to_max_length=getattr(config, "guide_pad_to_max_length", False),
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
            **({"guide_pad_to_max_length": True} if self.guide_pad_to_max_length else {}),
        }

    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """Write the processor (tokenizers, image processor config, settings) to a folder.

        The mixin writes the LLM tokenizer at the root, the guide tokenizer in
        ``guide_tokenizer/`` and ``processor_config.json`` (:meth:`to_dict`); the image processor's
        ``preprocessor_config.json`` is written here, as before the class was a ``ProcessorMixin``.

        Args:
            save_directory: Target folder (created if needed); a model checkpoint folder is fine.

        Returns:
            The folder path.

        Raises:
            TGLlavaConfigError: the template is not a registered one (checked before writing).
        """
        directory = Path(save_directory)
        self.to_dict()  # fail before any file is written
        directory.mkdir(parents=True, exist_ok=True)
        super().save_pretrained(str(directory))
        self.image_processor.save_pretrained(directory)
        return directory

    def __repr__(self) -> str:
        """Short: the mixin's repr prints both vocabularies and fails for unsaveable templates."""
        return (
            f"{type(self).__name__}(template={self.template.name!r}, num_image_tokens={self.num_image_tokens}, "
            f"crop_grid={self.crop_grid}, crop_source={self.crop_source!r}, guide_max_length="
            f"{self.guide_max_length}, guide_padding={self.guide_padding!r}, guide_pad_to_max_length="
            f"{self.guide_pad_to_max_length}, image_size={self.image_size}, "
            f"image_processor_backend={self.image_processor.backend!r})"
        )

    @property
    def model_input_names(self) -> list[str]:
        """The keys of :meth:`__call__`'s output (without ``labels``)."""
        return ["input_ids", "attention_mask", "pixel_values", "crop_pixel_values", "guide_input_ids",
                "guide_attention_mask"]

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> TGLlavaProcessor:
        """Load a processor written by :meth:`save_pretrained` (also called by ``AutoProcessor``).

        ``processor_config.json`` is found by the mixin's ``get_processor_dict`` (a local folder;
        a hub id where a hub is reachable) and read strictly; the image processor is loaded with
        the class of its recorded backend, the tokenizers with ``AutoTokenizer``.

        Args:
            pretrained_model_name_or_path: A folder (or hub id).
            **kwargs: File-locating options passed to every loader (``cache_dir``,
                ``local_files_only``, ``revision``, ``subfolder``, ``token``, ...); the ones
                ``AutoProcessor`` adds (``trust_remote_code``, ``_from_auto``) are ignored.

        Raises:
            TGLlavaCheckpointError: missing or malformed ``processor_config.json``, unknown keys
                or an unknown image-processor backend.
            TypeError: another keyword argument.
        """
        for name in _AUTO_KWARGS:
            kwargs.pop(name, None)
        unknown = sorted(set(kwargs) - set(_HUB_KWARGS))
        if unknown:
            raise TypeError(f"TGLlavaProcessor.from_pretrained got unexpected keyword arguments {unknown}")
        path = str(pretrained_model_name_or_path)
        where = f"{PROCESSOR_CONFIG_NAME} of {path}"
        try:
            settings, _ = cls.get_processor_dict(path, **kwargs)
        except (OSError, ValueError) as error:
            # A malformed file or an unresolvable hub id (a missing local file gives {} instead).
            if Path(path, PROCESSOR_CONFIG_NAME).is_file():
                raise TGLlavaCheckpointError(f"{where} is not valid JSON: {error}") from error
            raise TGLlavaCheckpointError(f"no {PROCESSOR_CONFIG_NAME} in {path}: {error}") from error
        settings = dict(settings)
        # get_processor_dict adds the chat templates it finds in the folder (a real LLM tokenizer
        # may bring one); the processor renders the project's own templates, so it has none.
        settings.pop("chat_template", None)
        if not settings:
            raise TGLlavaCheckpointError(f"no {PROCESSOR_CONFIG_NAME} in {path}")
        known = PROCESSOR_CONFIG_KEYS | PROCESSOR_CONFIG_OPTIONAL_KEYS
        if settings.get("processor_class") != PROCESSOR_CLASS or not PROCESSOR_CONFIG_KEYS <= set(settings) <= known:
            raise TGLlavaCheckpointError(
                f"{where}: expected processor_class {PROCESSOR_CLASS!r} and keys {sorted(PROCESSOR_CONFIG_KEYS)} "
                f"(optional {sorted(PROCESSOR_CONFIG_OPTIONAL_KEYS)}); unknown {sorted(set(settings) - known)}, "
                f"missing {sorted(PROCESSOR_CONFIG_KEYS - set(settings))}"
            )
        backend = settings["image_processor_backend"]
        if backend not in IMAGE_PROCESSOR_BACKENDS:
            raise TGLlavaCheckpointError(f"{where}: unknown image_processor_backend {backend!r}")
        subfolder = kwargs.pop("subfolder", "")
        guide_subfolder = settings["guide_tokenizer_subfolder"]
        if subfolder:
            guide_subfolder = os.path.join(subfolder, guide_subfolder)
        image_processor = IMAGE_PROCESSOR_BACKENDS[backend].from_pretrained(path, subfolder=subfolder, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(path, subfolder=subfolder, **kwargs)
        guide_tokenizer = AutoTokenizer.from_pretrained(path, subfolder=guide_subfolder, **kwargs)
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
            guide_pad_to_max_length=settings.get("guide_pad_to_max_length", False),
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
        """``guide_input_ids`` and ``guide_attention_mask`` ``[B, Lg]`` in the configured mode and length."""
        return pad_guides(guides, int(self.guide_tokenizer.pad_token_id), self.guide_padding, pad_to=self.guide_pad_to)

    @property
    def guide_pad_to(self) -> int | None:
        """The length every guide is padded to (SigLIP: ``guide_max_length``), or ``None`` (longest)."""
        return self.guide_max_length if self.guide_pad_to_max_length else None

    def preprocess_image(self, image: ImageInput | None, *, source: str | None = None) -> ImageTensors:
        """``pixel_values [3, S, S]`` and ``crop_pixel_values [C, 3, S, S]`` of one image (zeros for ``None``).

        Raises:
            TGLlavaInputError: unreadable, corrupt, empty or oversized image (names the source).
        """
        return self.image_preprocessor(image, source=source)

    def pad_input_ids(self, rows: Sequence[Sequence[int]], side: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Pad already-tokenised LLM rows (e.g. from :meth:`tokenize_prompt`) into ``input_ids`` and
        ``attention_mask`` ``[B, L]``, on ``side`` (``"left"`` for generation).

        The same rule as :meth:`pad_batch` (:func:`~.batching.pad_sequences`).

        Raises:
            TGLlavaInputError: an unknown side.
        """
        input_ids = pad_sequences(rows, self.pad_token_id, side)
        attention_mask = pad_sequences([[1] * len(row) for row in rows], 0, side)
        return input_ids, attention_mask

    def encode_prompt(
        self,
        prompt: str,
        image: ImageInput | None,
        guide_text: str,
        *,
        continuation: str | None = None,
        source: str | None = None,
    ) -> dict[str, torch.Tensor]:
        """Encode one templated prompt, its image and guide into unbatched tensors.

        The encode-one half of the batch assembler (:func:`~.batching.encode_sample`);
        :meth:`pad_batch` is the pad-many half, :meth:`__call__` is both.

        Args:
            prompt: An already-templated string (see :meth:`apply_template`).
            image: PIL image, path, bytes or ``None`` (text-only: a zero image).
            guide_text: The guide (see :meth:`inference_guide_text`).
            continuation: Optional text scored after the prompt: appended as its own tokens and
                returned as ``labels`` (:data:`IGNORE_INDEX` on the prompt).
            source: How errors name the image (default: its path or kind).

        Returns:
            ``input_ids [L]``, ``guide_input_ids [Lg]``, ``pixel_values [3, S, S]``,
            ``crop_pixel_values [C, 3, S, S]`` and, with ``continuation``, ``labels [L]``.

        Raises:
            TGLlavaInputError: a marker/image mismatch, an empty guide or continuation, or a bad
                image.
        """
        ids = self.tokenize_prompt(prompt, has_image=image is not None)
        labels = None
        if continuation is not None:
            continuation_ids = self.tokenize_continuation(continuation)
            labels = [IGNORE_INDEX] * len(ids) + continuation_ids
            ids = ids + continuation_ids
        guide_ids = self.tokenize_guide(guide_text)
        if image is not None and source is None:
            source = describe_source(image, "image")
        return encode_sample(ids, guide_ids, labels=labels, image=self.preprocess_image(image, source=source))

    def pad_batch(
        self,
        samples: Sequence[dict[str, torch.Tensor]],
        *,
        padding_side: str = "left",
        position_ids: bool = False,
    ) -> BatchFeature:
        """Pad and stack encoded samples with this processor's pad ids and guide padding.

        The pad-many half of the batch assembler (:func:`~.batching.pad_batch`): LLM sequences
        on ``padding_side`` with the pad id, labels with :data:`IGNORE_INDEX`, guides on the right
        in the configured ``guide_padding`` mode, everything else stacked.

        Args:
            samples: From :meth:`encode_prompt`, :func:`~.batching.encode_sample` or a caller that
                replaced their tensors (the engine's cached vision features).
            padding_side: ``"left"`` for generation, ``"right"`` for scoring and training.
            position_ids: Also return ``position_ids`` computed from the attention mask.

        Returns:
            ``BatchFeature`` of the batched tensors (see :func:`~.batching.pad_batch`).

        Raises:
            TGLlavaInputError: no samples, differing keys or an unknown side.
        """
        return BatchFeature(
            data=pad_batch(
                samples,
                padding_side=padding_side,
                pad_token_id=self.pad_token_id,
                guide_pad_token_id=int(self.guide_tokenizer.pad_token_id),
                guide_padding=self.guide_padding,
                position_ids=position_ids,
                guide_pad_to=self.guide_pad_to,
            )
        )

    def with_template(self, template: str) -> TGLlavaProcessor:
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

        samples = []
        for index, (prompt, image, guide) in enumerate(zip(prompts, images, guide_texts)):
            try:
                source = describe_source(image, f"image of sample {index}") if image is not None else None
                continuation = continuations[index] if continuations is not None else None
                samples.append(self.encode_prompt(prompt, image, guide, continuation=continuation, source=source))
            except TGLlavaInputError as error:
                raise _prefix_error(error, f"sample {index}") from error
        return self.pad_batch(samples, padding_side=padding_side)

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

        Steps (the official rules, docs/processing.md): :meth:`training_segments`; the guide from
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
        encoded = []
        for index, (sample, image) in enumerate(zip(samples, images)):
            if sample.has_image != (image is not None):
                raise TGLlavaInputError(f"sample {index}: has_image={sample.has_image} but image is {type(image).__name__}")
            # Text-only samples get the zero image (official): the vision side stays in the graph.
            tensors = image if image is not None else self.image_preprocessor.zeros()
            encoded.append(encode_sample(sample.input_ids, sample.guide_input_ids, labels=sample.labels, image=tensors))
        return self.pad_batch(encoded, padding_side=padding_side)
