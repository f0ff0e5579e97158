"""Processing layer of tg-llava-eval: everything between raw inputs and model tensors.

:class:`TGLlavaProcessor` is the single implementation of every preprocessing step (docs/processing.md)
used by training, the inference engine and both evaluation wrappers:

* :mod:`tg_llava_eval.conversation` — the project's conversation templates (``plain``, ``vicuna_v1``/``v1``,
  ``llama_3``, ``qwen_2``), byte-identical to the official strings, ``qwen_2_bare`` of the tiny
  presets, and the ``<image>`` rules;
* :mod:`.image_loading` — robust loading (path / bytes / PIL) with a pre-decode pixel limit;
* :mod:`.image_processing` — pad to square, PIL CLIP processing, TG-DP crops;
* :mod:`.guide` — the text guide (which text, tokenisation to the tower's length: CLIP 77, SigLIP
  64 padded to ``max_length``; padding modes);
* :mod:`.tokenization` — prompt tokenisation, image-token expansion, verified training labels;
* :mod:`.tokenizers` — hub-free tokenizer builders (real CLIP BPE, a locally trained SentencePiece
  SigLIP guide tokenizer, tiny LLM tokenizers);
* :mod:`.batching` — the one batch assembler: :func:`encode_sample` (one sample → unbatched
  tensors) and :func:`pad_batch` (many → padded batch), used by the processor, training collation
  and the inference engine;
* :mod:`.processing_tg_llava` — the processor class composing them (a ``ProcessorMixin``).

Importing this package registers :class:`TGLlavaProcessor` with ``AutoProcessor`` for
``model_type="tg_llava"`` (as external models register), so ``AutoProcessor.from_pretrained(dir)``
loads it without ``trust_remote_code``.

Typical use::

    processor = TGLlavaProcessor.from_pretrained(checkpoint_dir)        # or .from_config(...)
    prompt = processor.apply_template(question, has_image=True)          # project template
    guide = processor.inference_guide_text(question)                     # official guide rule
    batch = processor([prompt], [image], [guide], padding_side="left")   # BatchFeature of tensors

    sample = processor.tokenize_training_sample(conversations, has_image=True, max_length=2048)
    batch = processor.collate_training([sample], [processor.preprocess_image(image)])

    samples = [processor.encode_prompt(prompt, image, guide)]            # encode one ...
    batch = processor.pad_batch(samples, padding_side="left")            # ... pad many

See ``docs/processing.md`` for the decisions (guide padding, 16-bit images, pixel limit, crop
sources, why these templates are not the HF chat templates).
"""

from transformers import AutoProcessor

from ..conversation import (
    TEMPLATES,
    ConversationTemplate,
    Message,
    PlainTemplate,
    Segment,
    get_template,
    move_image_marker_to_front,
    strip_image_markers,
)
from ..modeling.configuration_tg_llava import TGLlavaConfig
from .batching import PADDING_SIDES, encode_sample, pad_batch, pad_sequences
from .guide import GUIDE_PADDING_MODES, inference_guide_text, pad_guides, tokenize_guide, training_guide_text
from .image_loading import DEFAULT_MAX_IMAGE_PIXELS, ImageInput, load_image
from .image_processing import (
    CROP_SOURCES,
    ImagePreprocessor,
    ImageTensors,
    background_colour,
    build_clip_image_processor,
    build_image_processor,
    expand_to_square,
    tile_crops,
    upsampled_crops,
)
from .processing_tg_llava import TGLlavaProcessor, TrainingSample
from .tokenization import IGNORE_INDEX, LabelMismatchError, expand_image_tokens, tokenize_segments
from .tokenizers import build_guide_tokenizer, build_llm_tokenizer, build_sentencepiece_guide_tokenizer, default_corpus

# External-model registration (no trust_remote_code): processor_config.json names the class, and
# a folder with a tg_llava config.json finds it by model type.
AutoProcessor.register(TGLlavaConfig, TGLlavaProcessor, exist_ok=True)

__all__ = [
    # the processor and its records
    "TGLlavaProcessor",
    "TrainingSample",
    "ImageTensors",
    "LabelMismatchError",
    # the batch assembler
    "PADDING_SIDES",
    "encode_sample",
    "pad_batch",
    "pad_sequences",
    # conversation templates
    "TEMPLATES",
    "ConversationTemplate",
    "PlainTemplate",
    "Message",
    "Segment",
    "get_template",
    "move_image_marker_to_front",
    "strip_image_markers",
    # guide text
    "GUIDE_PADDING_MODES",
    "inference_guide_text",
    "training_guide_text",
    "tokenize_guide",
    "pad_guides",
    # images
    "CROP_SOURCES",
    "DEFAULT_MAX_IMAGE_PIXELS",
    "ImageInput",
    "ImagePreprocessor",
    "load_image",
    "background_colour",
    "build_clip_image_processor",
    "build_image_processor",
    "expand_to_square",
    "tile_crops",
    "upsampled_crops",
    # LLM tokenisation and labels
    "IGNORE_INDEX",
    "expand_image_tokens",
    "tokenize_segments",
    # local tokenizer builders
    "build_guide_tokenizer",
    "build_llm_tokenizer",
    "build_sentencepiece_guide_tokenizer",
    "default_corpus",
]
