"""Image side of TG-LLaVA preprocessing: pad to square, CLIP processing and the TG-DP crops.

Official pipeline (``image_aspect_ratio='pad'``, reference ``tg_llava_architecture.md`` §4.2, parity
fixture ``preprocess_case.safetensors``):

1. ``convert("RGB")`` (:mod:`.image_loading`);
2. pad to a square with the CLIP mean colour ``int(255 * mean)`` per channel — (122, 116, 104)
   for CLIP, truncation not rounding — the original pasted at ``((side - w) // 2, (side - h) // 2)``;
3. CLIP processing with the **PIL** ("slow") processor: resize the shortest edge to ``S`` (bicubic),
   centre crop ``S x S``, rescale by 1/255, normalise with the CLIP mean/std. transformers 5 still
   ships it as ``CLIPImageProcessorPil``; the torchvision ("fast") ``CLIPImageProcessor`` resamples
   differently (a few uint8 steps), so the PIL one is the default and the one the parity test pins;
4. crops for the text-guided detail perceiver (TG-DP), ``crop_grid x crop_grid`` of them, row-major
   (for 2 x 2: top-left, top-right, bottom-left, bottom-right):

   * ``crop_source="upsampled"`` (official default): bilinear x``crop_grid`` upsampling
     (``align_corners=False``) of the normalised float32 ``[3, S, S]`` tensor, cut into tiles. The
     crops carry no detail beyond the ``S x S`` image (an official quirk, kept by default);
   * ``crop_source="original"`` (flagged variant): the padded square is CLIP-processed at
     ``crop_grid * S`` (bicubic from the original pixels) and cut into tiles, so each crop has real
     extra detail.

SigLIP vision tower (beyond the official code): the same pipeline with SigLIP's own constants,
read from transformers' ``SiglipImageProcessorPil`` (mean = std = 0.5 per channel, so the pad colour
is (127, 127, 127); bicubic; rescale 1/255) at the tower's ``image_size`` (384 for so400m). SigLIP's
processor resizes to ``S x S`` without a centre crop; on the padded square the CLIP steps (shortest
edge to ``S``, centre crop ``S x S``) are the same resize, so the pixels equal
``SiglipImageProcessorPil``'s (a unit test checks it). :func:`build_image_processor` picks the
constants by ``vision_config.model_type`` (its ``VISION_TOWERS`` entry's ``image_processor_class``).

Samples without an image get all-zero ``pixel_values`` and crops (the official behaviour for
text-only samples), so batch tensors stay rectangular.

Extreme aspect ratios: padding a 100000 x 10 strip would create a 10^10-pixel square. When the
square would exceed the pixel limit, the image is first shrunk (bicubic, aspect kept) so that the
square fits, and a note is logged; images whose square fits — all ordinary photos — take the exact
official path.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import transformers
from PIL import Image
from transformers import CLIPImageProcessor, CLIPImageProcessorPil
from transformers.image_processing_utils import BaseImageProcessor
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from ..errors import TGLlavaConfigError
from ..modeling.configuration_tg_llava import CROP_SOURCES, VISION_TOWERS  # crop sources; tower families
from .image_loading import DEFAULT_MAX_IMAGE_PIXELS, ImageInput, describe_source, load_image

logger = logging.getLogger(__name__)

#: Image-processor classes by ``backend`` name, for saving/loading (dispatch by registry).
IMAGE_PROCESSOR_BACKENDS: dict[str, type[BaseImageProcessor]] = {
    "pil": CLIPImageProcessorPil,
    "torchvision": CLIPImageProcessor,
}
#: The vision family of configs that do not name one (the official CLIP).
DEFAULT_VISION_MODEL_TYPE = "clip_vision_model"
#: Largest value of an 8-bit channel: the mean colour is ``int(_UINT8_MAX * mean)``.
_UINT8_MAX = 255


@dataclass
class ImageTensors:
    """The processed form of one image.

    Attributes:
        pixel_values: ``[3, S, S]`` float32, the CLIP-normalised base image.
        crop_pixel_values: ``[C, 3, S, S]`` float32, ``C = crop_grid ** 2`` crops, row-major.
    """

    pixel_values: torch.Tensor
    crop_pixel_values: torch.Tensor


def build_clip_image_processor(
    image_size: int,
    *,
    image_mean: Sequence[float] = OPENAI_CLIP_MEAN,
    image_std: Sequence[float] = OPENAI_CLIP_STD,
) -> CLIPImageProcessorPil:
    """The PIL CLIP image processor of the official pipeline, for any image size.

    Args:
        image_size: ``S``: shortest-edge resize target and centre-crop size (336 for the real
            vision tower, ``config.image_size``).
        image_mean / image_std: Normalisation constants (OpenAI CLIP's by default).

    Returns:
        A ``CLIPImageProcessorPil`` (bicubic, rescale 1/255, normalise, convert RGB).
    """
    return CLIPImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=list(image_mean),
        image_std=list(image_std),
    )


def build_image_processor(image_size: int, vision_model_type: str = DEFAULT_VISION_MODEL_TYPE) -> CLIPImageProcessorPil:
    """The PIL image processor of the pipeline with the vision tower family's own constants.

    Args:
        image_size: ``S`` (``config.image_size``: 336 CLIP-L, 384 SigLIP so400m).
        vision_model_type: ``vision_config.model_type``; its family's transformers processor
            (its ``VISION_TOWERS`` entry's ``image_processor_class``) gives mean, std and the resampling filter.

    Returns:
        A ``CLIPImageProcessorPil`` (see :func:`build_clip_image_processor`).

    Raises:
        TGLlavaConfigError: A vision family without image constants here.
    """
    if vision_model_type not in VISION_TOWERS:
        raise TGLlavaConfigError(
            f"no image processing known for vision_config.model_type={vision_model_type!r}; known: {tuple(VISION_TOWERS)}"
        )
    family = getattr(transformers, VISION_TOWERS[vision_model_type].image_processor_class)
    processor = build_clip_image_processor(image_size, image_mean=family.image_mean, image_std=family.image_std)
    processor.resample = family.resample
    return processor


def background_colour(image_mean: Sequence[float]) -> tuple[int, ...]:
    """The padding colour: ``int(255 * mean)`` per channel (truncated, as the official code).

    Returns:
        ``(122, 116, 104)`` for the CLIP mean.
    """
    return tuple(int(_UINT8_MAX * value) for value in image_mean)


def expand_to_square(image: Image.Image, background: tuple[int, ...]) -> Image.Image:
    """Pad an RGB image to a square, centred (the official ``expand2square``).

    Args:
        image: ``w x h`` RGB image.
        background: Fill colour.

    Returns:
        A ``max(w, h)`` square with the image pasted at ``((side - w) // 2, (side - h) // 2)``; the
        input itself when it is already square.
    """
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    square = Image.new(image.mode, (side, side), background)
    square.paste(image, ((side - width) // 2, (side - height) // 2))
    return square


def fit_square_within(image: Image.Image, max_pixels: int, *, source: str = "image") -> Image.Image:
    """Shrink an extreme-aspect image so that its padded square has at most ``max_pixels``.

    Args:
        image: RGB image of ``w x h``.
        max_pixels: Pixel limit the square ``max(w, h) ** 2`` must respect.
        source: Name for the log note.

    Returns:
        The image unchanged when ``max(w, h) ** 2 <= max_pixels``, otherwise a bicubic-resized copy
        whose longer side is ``floor(sqrt(max_pixels))`` (shorter side at least 1 pixel).
    """
    width, height = image.size
    side = max(width, height)
    if side * side <= max_pixels:
        return image
    limit = math.isqrt(max_pixels)
    scale = limit / side
    new_size = (max(1, min(limit, round(width * scale))), max(1, min(limit, round(height * scale))))
    logger.info(
        "%s: %dx%d would pad to a %d-pixel square (limit %d); shrinking it to %dx%d first",
        source, width, height, side * side, max_pixels, *new_size,
    )
    return image.resize(new_size, Image.BICUBIC)


def tile_crops(image: torch.Tensor, grid: int) -> torch.Tensor:
    """Cut a ``[3, g*S, g*S]`` tensor into ``g x g`` tiles, row-major.

    Args:
        image: ``[3, g*S, g*S]``.
        grid: ``g``.

    Returns:
        ``[g*g, 3, S, S]``; tile ``r * g + c`` covers rows ``r*S:(r+1)*S`` and columns
        ``c*S:(c+1)*S`` (for g = 2: TL, TR, BL, BR).
    """
    channels, height, width = image.shape
    size = height // grid
    if height != width or size * grid != height:
        raise ValueError(f"tile_crops: expected a square side divisible by {grid}, got {tuple(image.shape)}")
    # [3, g, S, g, S] -> [g(rows), g(cols), 3, S, S] -> [g*g, 3, S, S]
    tiles = image.reshape(channels, grid, size, grid, size).permute(1, 3, 0, 2, 4)
    return tiles.reshape(grid * grid, channels, size, size).contiguous()


def upsampled_crops(pixel_values: torch.Tensor, grid: int) -> torch.Tensor:
    """Official TG-DP crops: bilinear x``grid`` upsampling of the normalised image, then tiles.

    Args:
        pixel_values: ``[3, S, S]`` float32, CLIP-normalised.
        grid: Crops per side.

    Returns:
        ``[grid*grid, 3, S, S]`` float32.
    """
    upsampled = F.interpolate(pixel_values[None].float(), scale_factor=grid, mode="bilinear", align_corners=False)[0]
    return tile_crops(upsampled, grid)


def _shortest_edge(image_processor: BaseImageProcessor) -> int | None:
    """The processor's shortest-edge resize target (``None`` when it resizes otherwise)."""
    size = image_processor.size
    return None if size is None or size.get("shortest_edge") is None else int(size["shortest_edge"])


class ImagePreprocessor:
    """Turns one image (or ``None``) into :class:`ImageTensors`.

    Args:
        image_processor: A CLIP image processor (``CLIPImageProcessorPil`` for official parity)
            whose ``crop_size`` is square; its ``image_mean`` gives the padding colour.
        crop_grid: Crops per side (``config.crop_grid``, 2 officially).
        crop_source: ``"upsampled"`` or ``"original"`` (see the module docstring).
        max_image_pixels: Pixel limit for inputs (checked before decoding) and padded squares.

    Raises:
        TGLlavaConfigError: unknown ``crop_source``, ``crop_grid < 1`` or a non-square crop size.
    """

    def __init__(
        self,
        image_processor: BaseImageProcessor,
        *,
        crop_grid: int,
        crop_source: str = "upsampled",
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    ) -> None:
        if crop_source not in CROP_SOURCES:
            raise TGLlavaConfigError(f"crop_source must be one of {CROP_SOURCES}, got {crop_source!r}")
        if crop_grid < 1:
            raise TGLlavaConfigError(f"crop_grid must be >= 1, got {crop_grid}")
        crop_size = image_processor.crop_size
        if crop_size is None or crop_size["height"] != crop_size["width"]:
            raise TGLlavaConfigError(f"the image processor's crop_size must be square, got {crop_size}")
        self.image_processor = image_processor
        self.crop_grid = crop_grid
        self.crop_source = crop_source
        self.max_image_pixels = max_image_pixels
        self.image_size: int = int(crop_size["height"])
        self.background = background_colour(image_processor.image_mean)

    @property
    def num_crops(self) -> int:
        """``crop_grid ** 2``."""
        return self.crop_grid * self.crop_grid

    def padded_square(self, image: ImageInput, *, source: str | None = None) -> Image.Image:
        """Load, convert to RGB and pad to square (steps 1-2).

        Args:
            image: PIL image, path or bytes.
            source: Name for error messages (defaults to the path / ``"image"``).

        Returns:
            The padded RGB square.

        Raises:
            TGLlavaInputError: unreadable, corrupt, empty or oversized input (names ``source``).
        """
        name = source or describe_source(image, "image")
        rgb = load_image(image, max_pixels=self.max_image_pixels, source=name)
        rgb = fit_square_within(rgb, self.max_image_pixels, source=name)
        return expand_to_square(rgb, self.background)

    def clip_process(self, square: Image.Image, size: int | None = None) -> torch.Tensor:
        """CLIP-process a square image at size ``size`` (default ``S``) (step 3).

        With the PIL backend the square is first resized with PIL to the processor's resize target
        (``size x size``), using the processor's own filter. That is exactly the resize the
        processor would do (it converts to PIL and calls ``Image.resize`` with the same arguments),
        so the result is bit-identical (a unit test checks it); doing it before the processor
        avoids its numpy copies of a possibly megapixel square, which dominate the cost.

        Returns:
            ``[3, size, size]`` float32.
        """
        target = self.image_size if size is None else size
        overrides = {}
        if target != self.image_size:
            overrides = {"size": {"shortest_edge": target}, "crop_size": {"height": target, "width": target}}
        resize_side = target if overrides else _shortest_edge(self.image_processor)
        if self.image_processor.backend == "pil" and resize_side is not None and square.size != (resize_side, resize_side):
            square = square.resize((resize_side, resize_side), resample=self.image_processor.resample)
        processed = self.image_processor(square, return_tensors="pt", **overrides)["pixel_values"]
        return processed[0].to(torch.float32)

    def __call__(self, image: ImageInput | None, *, source: str | None = None) -> ImageTensors:
        """Process one image (``None`` = a text-only sample: zeros).

        Args:
            image: PIL image, path, bytes or ``None``.
            source: Name for error messages.

        Returns:
            ``pixel_values [3, S, S]`` and ``crop_pixel_values [crop_grid**2, 3, S, S]``, float32.

        Raises:
            TGLlavaInputError: see :meth:`padded_square`.
        """
        if image is None:
            return self.zeros()
        square = self.padded_square(image, source=source)
        pixel_values = self.clip_process(square)
        if self.crop_source == "upsampled":
            crops = upsampled_crops(pixel_values, self.crop_grid)
        else:
            crops = tile_crops(self.clip_process(square, self.crop_grid * self.image_size), self.crop_grid)
        return ImageTensors(pixel_values=pixel_values, crop_pixel_values=crops)

    def zeros(self) -> ImageTensors:
        """The all-zero image and crops of a text-only sample."""
        size = self.image_size
        return ImageTensors(
            pixel_values=torch.zeros(3, size, size, dtype=torch.float32),
            crop_pixel_values=torch.zeros(self.num_crops, 3, size, size, dtype=torch.float32),
        )
