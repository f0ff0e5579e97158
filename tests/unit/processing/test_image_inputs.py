"""Bad and unusual images: each is handled correctly or rejected with an error naming the input."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tg_llava_eval.errors import TGLlavaInputError
from tg_llava_eval.processing import load_image

from .helpers import png_with_declared_size

BACKGROUND = (122, 116, 104)


def _save(image: Image.Image, path, format_="PNG"):
    image.save(path, format=format_)
    return path


def _centre_pixel(processor, image):
    """The padded-square colour at the centre of the original image."""
    square = np.asarray(processor.image_preprocessor.padded_square(image))
    return tuple(square[square.shape[0] // 2, square.shape[1] // 2])


def test_missing_file_is_named(tmp_path, make_processor):
    missing = tmp_path / "nope.jpg"
    with pytest.raises(TGLlavaInputError, match=f"image file not found: {missing}"):
        make_processor().preprocess_image(str(missing))


def test_zero_byte_file_is_named(tmp_path, make_processor):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(TGLlavaInputError, match=f"empty \\(0 bytes\\): {empty}"):
        make_processor().preprocess_image(empty)


def test_corrupt_file_is_named(tmp_path, make_processor):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"this is not an image at all" * 10)
    with pytest.raises(TGLlavaInputError, match=f"not a readable image file.*{corrupt}"):
        make_processor().preprocess_image(corrupt)


def test_truncated_file_is_named(tmp_path, make_processor):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    whole = _save(Image.fromarray(noise), tmp_path / "whole.png")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(TGLlavaInputError, match=f"corrupt or truncated image: {truncated}"):
        make_processor().preprocess_image(truncated)


def test_rgba_drops_alpha_without_compositing(tmp_path, make_processor):
    # Fully transparent red: the official convert("RGB") keeps the red (no blend onto a background).
    image = Image.new("RGBA", (20, 20), (200, 10, 10, 0))
    path = _save(image, tmp_path / "rgba.png")
    assert _centre_pixel(make_processor(), path) == (200, 10, 10)


def test_la_replicates_luminance(make_processor):
    assert _centre_pixel(make_processor(), Image.new("LA", (9, 9), (77, 0))) == (77, 77, 77)


def test_palette_image_uses_its_palette(tmp_path, make_processor):
    image = Image.new("P", (12, 12), 3)
    image.putpalette([0, 0, 0] * 3 + [10, 220, 30] + [0, 0, 0] * 252)
    image.info["transparency"] = 3
    path = _save(image, tmp_path / "palette.png")
    assert _centre_pixel(make_processor(), path) == (10, 220, 30)


def test_cmyk_uses_pil_conversion(tmp_path, make_processor):
    image = Image.new("CMYK", (10, 10), (0, 255, 0, 0))
    path = _save(image, tmp_path / "cmyk.jpg", "JPEG")
    expected = Image.open(path).convert("RGB").getpixel((5, 5))
    assert _centre_pixel(make_processor(), path) == expected
    assert expected[0] > 200 and expected[1] < 60


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    path = _save(Image.fromarray(values), tmp_path / "deep.png")
    assert Image.open(path).mode == "I;16"
    rgb = np.asarray(load_image(path))
    assert rgb[0, :, 0].tolist() == [0, 1, 128, 255]
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    # PIL's own conversion clips: 32896 would become 255.
    assert np.asarray(Image.open(path).convert("RGB"))[0, 2, 0] == 255


def test_one_by_one_image(make_processor):
    processor = make_processor()
    tensors = processor.preprocess_image(Image.new("RGB", (1, 1), (255, 0, 0)))
    size = processor.image_size
    assert tensors.pixel_values.shape == (3, size, size) and tensors.crop_pixel_values.shape == (4, 3, size, size)
    # The single red pixel fills the whole resized image.
    red = (1.0 - 0.48145466) / 0.26862954
    assert torch_allclose(tensors.pixel_values[0], red)


def torch_allclose(tensor, value, atol=1e-4):
    return bool((tensor - value).abs().max() < atol)


def test_very_wide_image_pads_to_square(make_processor):
    preprocessor = make_processor().image_preprocessor
    strip = Image.new("RGB", (8000, 100), (255, 0, 0))
    square = preprocessor.padded_square(strip)
    # 8000 x 8000 (under the pixel limit: the exact official path), the strip centred vertically.
    assert square.size == (8000, 8000)
    assert square.getpixel((0, 3949)) == BACKGROUND and square.getpixel((0, 3950)) == (255, 0, 0)
    assert square.getpixel((7999, 4049)) == (255, 0, 0) and square.getpixel((7999, 4050)) == BACKGROUND
    pixels = preprocessor.clip_process(square).numpy()
    mean = np.array([0.48145466, 0.4578275, 0.40821073])
    std = np.array([0.26862954, 0.26130258, 0.27577711])
    background = ((np.array(BACKGROUND) / 255 - mean) / std).astype(np.float32)
    size = preprocessor.image_size
    # The top row is padding colour; the strip (0.4 output rows high) reddens the middle row.
    assert np.allclose(pixels[:, 0, :].mean(axis=1), background, atol=1e-4)
    assert pixels[0, size // 2, :].min() > background[0] + 0.3


def test_decompression_bomb_header_is_rejected_before_decoding(tmp_path, make_processor):
    import PIL.Image

    global_limit = PIL.Image.MAX_IMAGE_PIXELS
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_with_declared_size(100_000, 100_000))
    with pytest.raises(TGLlavaInputError, match=f"too many pixels.*{bomb}|over the limit.*{bomb}"):
        make_processor().preprocess_image(bomb)
    # Under PIL's own limit but over ours: our check fires on the header; the pixel data of this
    # file is garbage for that size, so a decode attempt would fail with "truncated" instead.
    medium = tmp_path / "medium.png"
    medium.write_bytes(png_with_declared_size(3000, 3000))
    with pytest.raises(TGLlavaInputError, match=f"3000x3000 = 9000000 pixels, over the limit of 1000000.*{medium}"):
        make_processor(max_image_pixels=1_000_000).preprocess_image(medium)
    assert PIL.Image.MAX_IMAGE_PIXELS == global_limit


def test_bytes_and_pil_inputs_match_the_file(tmp_path, make_processor):
    noise = np.random.default_rng(1).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    path = _save(Image.fromarray(noise), tmp_path / "noise.png")
    processor = make_processor()
    from_path = processor.preprocess_image(path)
    from_bytes = processor.preprocess_image(path.read_bytes())
    from_pil = processor.preprocess_image(Image.open(io.BytesIO(path.read_bytes())))
    assert (from_path.pixel_values == from_bytes.pixel_values).all()
    assert (from_path.pixel_values == from_pil.pixel_values).all()
    with pytest.raises(TGLlavaInputError, match="image of sample 0: expected a PIL image"):
        processor.preprocess_image(12345, source="image of sample 0")


def test_bad_image_in_a_batch_names_sample_and_file(tmp_path, make_processor):
    processor = make_processor()
    good = Image.new("RGB", (8, 8))
    missing = tmp_path / "gone.png"
    prompt = processor.apply_template("What is it?", has_image=True)
    with pytest.raises(TGLlavaInputError, match=f"sample 1: image file not found: {missing}"):
        processor([prompt, prompt], [good, str(missing)], ["What is it?"] * 2)


def test_truncated_file_is_named_even_when_pil_loads_truncated_images(tmp_path, make_processor, monkeypatch):
    """lmms-eval sets PIL's process-wide LOAD_TRUNCATED_IMAGES at import; the check must not depend on it."""
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for suffix in ("png", "jpg"):
        whole = _save(Image.fromarray(noise), tmp_path / f"whole.{suffix}", "JPEG" if suffix == "jpg" else "PNG")
        truncated = tmp_path / f"truncated.{suffix}"
        truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
        with pytest.raises(TGLlavaInputError, match=f"corrupt or truncated image: {truncated}"):
            make_processor().preprocess_image(truncated)
        assert make_processor().preprocess_image(whole).pixel_values.shape[0] == 3
