"""Robust image loading: PIL image / file path / encoded bytes → an RGB ``PIL.Image``.

Every failure is reported as :class:`tg_llava_eval.errors.TGLlavaInputError` naming the input (the
file path, or a caller-supplied description such as ``"image of sample 3"``), so an evaluation
run can record the bad row and go on instead of crashing inside PIL or torch.

Decisions (also in ``docs/processing.md``):

* **Pixel limit before decoding.** ``Image.open`` only reads the header; the declared
  ``width * height`` is compared with ``max_pixels`` *before* any pixel is decoded, so a
  decompression bomb (a small file declaring a huge canvas) costs nothing. PIL's global
  ``Image.MAX_IMAGE_PIXELS`` is never modified; PIL's own bomb check (an error above twice its
  global limit) is caught and reported the same way. Its warning is silenced locally.
* **Mode conversion = the official ``.convert("RGB")``** for RGB-like modes: RGBA/LA/PA/RGBa
  alpha is dropped *without compositing* (the colours under transparent pixels come through,
  as in the official pipeline and the parity fixture), P uses its palette, CMYK uses PIL's naive
  conversion, 1 and L are replicated to three channels.
* **High bit depth is scaled, not clipped.** PIL's ``convert`` clips 16-bit (``I;16*``) and 32-bit
  integer (``I``) images to 0..255, which turns most of a 16-bit photo white. Here such images are
  taken as 16-bit data (what PNG/TIFF decoders produce): clipped to 0..65535 and divided by 257
  (65535 → 255 exactly), rounded, then replicated to RGB. Float (``F``) images are taken as
  0..255 values and clipped. This deliberately deviates from the official code (which would clip).
* EXIF orientation is not applied (neither does the official pipeline); animated images give
  their first frame.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import TGLlavaInputError

logger = logging.getLogger(__name__)

#: What an image argument may be: a decoded PIL image, a file path, or the encoded file bytes (the
#: one definition; ``tg_llava_eval.inference.requests`` uses it).
ImageInput = Image.Image | str | os.PathLike | bytes

#: Default pixel limit: Pillow's own default ``MAX_IMAGE_PIXELS`` (1024*1024*1024 // 4 // 3, about
#: 89.5 megapixels, ~ a 9500 x 9500 photo), applied by this module without touching Pillow's global.
DEFAULT_MAX_IMAGE_PIXELS = 1024 * 1024 * 1024 // 4 // 3

#: Largest value of a 16-bit sample; ``/ 257`` maps 0..65535 onto 0..255 exactly (65535 = 255 * 257).
_UINT16_MAX = 65535
_UINT16_TO_UINT8 = 257
_UINT8_MAX = 255
#: PIL modes holding more than 8 bits per sample, scaled instead of clipped.
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def describe_source(image: ImageInput, fallback: str) -> str:
    """A human-readable name for an image input, used in error messages.

    Args:
        image: The input.
        fallback: Used for in-memory inputs (PIL images, bytes), e.g. ``"image of sample 3"``.

    Returns:
        The file path for path inputs, ``fallback`` otherwise.
    """
    if isinstance(image, (str, os.PathLike)):
        return str(image)
    return fallback


def open_image(image: ImageInput, *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, source: str | None = None) -> Image.Image:
    """Open and fully decode an image after checking its declared size.

    Args:
        image: A ``PIL.Image.Image``, a path (``str``/``PathLike``) or the encoded file bytes.
        max_pixels: Largest accepted ``width * height``, checked on the header before decoding.
        source: Name used in error messages; defaults to the path, or ``"image"`` for in-memory input.

    Returns:
        The decoded image, in whatever mode the file has.

    Raises:
        TGLlavaInputError: missing or empty file, unreadable/corrupt/truncated data, too many pixels,
            or an argument of an unsupported type. The message names ``source``.
    """
    name = source or describe_source(image, "image")
    if isinstance(image, Image.Image):
        _check_pixels(image.size, max_pixels, name)
        try:
            image.load()  # a lazily opened image may still fail here (truncated file)
        except (OSError, SyntaxError, ValueError, EOFError) as error:
            raise TGLlavaInputError(f"corrupt or truncated image: {name}: {error}") from error
        return image
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise TGLlavaInputError(f"image file not found: {name}")
        if path.stat().st_size == 0:
            raise TGLlavaInputError(f"image file is empty (0 bytes): {name}")
        data = path.read_bytes()
    elif isinstance(image, (bytes, bytearray)):
        if not image:
            raise TGLlavaInputError(f"image data is empty (0 bytes): {name}")
        data = bytes(image)
    else:
        raise TGLlavaInputError(f"{name}: expected a PIL image, a file path or bytes, got {type(image).__name__}")
    stream = io.BytesIO(data)
    with stream:
        try:
            with warnings.catch_warnings():
                # The size is judged below against our own limit; PIL's warning would only be noise.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                opened = Image.open(stream)
            _check_pixels(opened.size, max_pixels, name)
            _check_complete(data, opened.format, name)
            opened.load()
        except Image.DecompressionBombError as error:
            raise TGLlavaInputError(f"image has too many pixels (decompression bomb?): {name}: {error}") from error
        except UnidentifiedImageError as error:
            raise TGLlavaInputError(f"not a readable image file (unknown or corrupt format): {name}") from error
        except (OSError, SyntaxError, ValueError, EOFError) as error:
            if isinstance(error, TGLlavaInputError):
                raise
            raise TGLlavaInputError(f"corrupt or truncated image: {name}: {error}") from error
    return opened


#: End-of-stream markers of the formats whose truncation is checked on the bytes: PNG's IEND chunk
#: (type + CRC) and JPEG's EOI marker.
_END_MARKERS = {"PNG": b"IEND\xaeB`\x82", "JPEG": b"\xff\xd9"}
#: Bytes after the end marker that are tolerated (some writers append padding or metadata).
_TRAILING_SLACK = 4096


def _check_complete(data: bytes, image_format: str | None, name: str) -> None:
    """Raise when a PNG or JPEG file ends before its end marker.

    PIL reports truncated files only while ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` is False, and
    other libraries set that process-wide flag to True at import (lmms-eval does), after which a
    half-written file decodes silently into grey pixels. Checking the end marker on the bytes keeps
    the report independent of that global.
    """
    marker = _END_MARKERS.get(image_format or "")
    if marker is not None and marker not in data[-(len(marker) + _TRAILING_SLACK):]:
        raise TGLlavaInputError(f"corrupt or truncated image: {name}: no {image_format} end marker (file cut short?)")


def _check_pixels(size: tuple[int, int], max_pixels: int, name: str) -> None:
    """Raise when ``width * height`` exceeds ``max_pixels`` or the image is empty."""
    width, height = size
    if width <= 0 or height <= 0:
        raise TGLlavaInputError(f"image has an empty size {width}x{height}: {name}")
    if width * height > max_pixels:
        raise TGLlavaInputError(
            f"image is {width}x{height} = {width * height} pixels, over the limit of {max_pixels} "
            f"(decompression bomb protection; raise max_image_pixels to accept it): {name}"
        )


def to_rgb(image: Image.Image, *, source: str = "image") -> Image.Image:
    """Convert a decoded image to 8-bit RGB (see the module docstring for the rules per mode).

    Args:
        image: Any PIL image.
        source: Name used in error messages.

    Returns:
        An ``RGB`` image of the same size (the input itself when it is already RGB).

    Raises:
        TGLlavaInputError: a mode PIL cannot convert to RGB (e.g. ``La``), naming ``source``.
    """
    if image.mode == "RGB":
        return image
    if image.mode in _SIXTEEN_BIT_MODES:
        samples = np.asarray(image).astype(np.float64)
        scaled = np.rint(np.clip(samples, 0, _UINT16_MAX) / _UINT16_TO_UINT8).astype(np.uint8)
        return Image.fromarray(scaled, mode="L").convert("RGB")
    if image.mode == "F":
        samples = np.asarray(image).astype(np.float64)
        clipped = np.rint(np.clip(np.nan_to_num(samples), 0, _UINT8_MAX)).astype(np.uint8)
        return Image.fromarray(clipped, mode="L").convert("RGB")
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as error:
        raise TGLlavaInputError(f"cannot convert image mode {image.mode!r} to RGB: {source}: {error}") from error


def load_image(image: ImageInput, *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, source: str | None = None) -> Image.Image:
    """:func:`open_image` then :func:`to_rgb`: the one entry point used by the processor.

    Args:
        image: A ``PIL.Image.Image``, a path or encoded bytes.
        max_pixels: Largest accepted ``width * height`` (checked before decoding).
        source: Name used in error messages (defaults to the path / ``"image"``).

    Returns:
        An 8-bit ``RGB`` image.

    Raises:
        TGLlavaInputError: see :func:`open_image` and :func:`to_rgb`.
    """
    name = source or describe_source(image, "image")
    return to_rgb(open_image(image, max_pixels=max_pixels, source=name), source=name)
