"""Processing layer of tg-llava-eval: everything between raw inputs and model tensors.

:class:`TGLlavaProcessor` is the single implementation of every preprocessing step (DESIGN §4,
STYLE rule 7) used by training, the inference engine and both evaluation wrappers:

* :mod:`.conversation` — the project's conversation templates (``plain``, ``vicuna_v1``/``v1``,
  ``llama_3``, ``qwen_2``), byte-identical to the official strings, and the ``<image>`` rules;
* :mod:`.image_loading` — robust loading (path / bytes / PIL) with a pre-decode pixel limit;
* :mod:`.image_processing` — pad to square, PIL CLIP processing, TG-DP crops;
* :mod:`.guide` — the text guide (which text, CLIP tokenisation to 77, padding modes);
* :mod:`.tokenization` — prompt tokenisation, image-token expansion, verified training labels;
* :mod:`.tokenizers` — hub-free tokenizer builders (real CLIP BPE, tiny LLM tokenizers);
* :mod:`.processing_tg_llava` — the processor class composing them.

See ``docs/processing.md`` for the decisions (guide padding, 16-bit images, pixel limit, crop
sources, why these templates are not the HF chat templates).
"""

from .conversation import (
    TEMPLATES,
    ConversationTemplate,
    Message,
    PlainTemplate,
    Segment,
    get_template,
    move_image_marker_to_front,
    strip_image_markers,
)
from .guide import GUIDE_PADDING_MODES, inference_guide_text, pad_guides, tokenize_guide, training_guide_text
from .image_loading import DEFAULT_MAX_IMAGE_PIXELS, ImageInput, load_image
from .image_processing import (
    CROP_SOURCES,
    ImagePreprocessor,
    ImageTensors,
    background_colour,
    build_clip_image_processor,
    expand_to_square,
    tile_crops,
    upsampled_crops,
)
from .processing_tg_llava import TGLlavaProcessor, TrainingSample
from .tokenization import IGNORE_INDEX, LabelMismatchError, expand_image_tokens, tokenize_segments
from .tokenizers import build_guide_tokenizer, build_llm_tokenizer, default_corpus

__all__ = [
    "CROP_SOURCES",
    "DEFAULT_MAX_IMAGE_PIXELS",
    "GUIDE_PADDING_MODES",
    "IGNORE_INDEX",
    "TEMPLATES",
    "ConversationTemplate",
    "ImageInput",
    "ImagePreprocessor",
    "ImageTensors",
    "LabelMismatchError",
    "Message",
    "PlainTemplate",
    "Segment",
    "TGLlavaProcessor",
    "TrainingSample",
    "background_colour",
    "build_clip_image_processor",
    "build_guide_tokenizer",
    "build_llm_tokenizer",
    "default_corpus",
    "expand_image_tokens",
    "expand_to_square",
    "get_template",
    "inference_guide_text",
    "load_image",
    "move_image_marker_to_front",
    "pad_guides",
    "strip_image_markers",
    "tile_crops",
    "tokenize_guide",
    "tokenize_segments",
    "training_guide_text",
    "upsampled_crops",
]
