"""Image pipeline: parity with the official preprocessing fixture and the crop geometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file

from tests.shared_files import official_parity_file
from tg_llava_eval.errors import TGLlavaConfigError
from tg_llava_eval.processing import (
    ImagePreprocessor,
    background_colour,
    build_clip_image_processor,
    tile_crops,
    upsampled_crops,
)

FIXTURE_IMAGES = ("preprocess_img0_rgb_80x50.png", "preprocess_img1_rgba_50x120.png", "preprocess_img2_l_64x64.png")
#: Tolerance suggested by the fixture README for the PIL processor (float16 storage error ~1e-3).
PARITY_ATOL = 2e-3


@pytest.fixture(scope="module")
def official():
    return load_file(str(official_parity_file("preprocess_case.safetensors")))


def test_clip_mean_padding_colour():
    assert background_colour([0.48145466, 0.4578275, 0.40821073]) == (122, 116, 104)


def test_official_parity_through_the_processor(official, make_processor):
    """pixel_values and crops of the three fixture images via the real __call__ path."""
    processor = make_processor("qwen_2", image_size=336)
    for index, name in enumerate(FIXTURE_IMAGES):
        square = np.asarray(processor.image_preprocessor.padded_square(official_parity_file(name)))
        assert np.array_equal(square, official[f"padded_square_{index}"].numpy()), name
    prompt = processor.apply_template("Describe the image.", has_image=True)
    paths = [str(official_parity_file(name)) for name in FIXTURE_IMAGES]
    batch = processor([prompt] * 3, paths, ["Describe the image."] * 3)
    assert batch["pixel_values"].shape == (3, 3, 336, 336) and batch["pixel_values"].dtype == torch.float32
    assert batch["crop_pixel_values"].shape == (3, 4, 3, 336, 336)
    pixel_error = (batch["pixel_values"] - official["pixel_values"].float()).abs().max().item()
    crop_error = (batch["crop_pixel_values"] - official["crops"].float()).abs().max().item()
    assert pixel_error < PARITY_ATOL, pixel_error
    assert crop_error < PARITY_ATOL, crop_error


def test_pre_resize_is_bit_identical_to_the_processor_resize():
    # ImagePreprocessor resizes the square with PIL before handing it to the HF processor; that
    # must equal the processor doing the resize itself.
    image_processor = build_clip_image_processor(48)
    preprocessor = ImagePreprocessor(image_processor, crop_grid=2)
    noise = np.random.default_rng(3).integers(0, 256, (211, 211, 3), dtype=np.uint8)
    square = Image.fromarray(noise)
    direct = image_processor(square, return_tensors="pt")["pixel_values"][0]
    assert torch.equal(preprocessor.clip_process(square), direct)
    direct_big = image_processor(
        square, return_tensors="pt", size={"shortest_edge": 96}, crop_size={"height": 96, "width": 96}
    )["pixel_values"][0]
    assert torch.equal(preprocessor.clip_process(square, 96), direct_big)


def test_tile_order_is_row_major():
    size = 4
    image = torch.zeros(3, 2 * size, 2 * size)
    image[:, :size, :size], image[:, :size, size:] = 1, 2  # top-left, top-right
    image[:, size:, :size], image[:, size:, size:] = 3, 4  # bottom-left, bottom-right
    tiles = tile_crops(image, 2)
    assert tiles.shape == (4, 3, size, size)
    assert [tile.unique().item() for tile in tiles] == [1, 2, 3, 4]  # TL, TR, BL, BR


@pytest.mark.parametrize("grid", [1, 2, 3])
def test_upsampled_crops_generalise_to_any_grid(grid):
    pixel_values = torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(grid))
    crops = upsampled_crops(pixel_values, grid)
    assert crops.shape == (grid * grid, 3, 8, 8)
    upsampled = F.interpolate(pixel_values[None], scale_factor=grid, mode="bilinear", align_corners=False)[0]
    mosaic = torch.cat([torch.cat(list(crops[row * grid : (row + 1) * grid]), dim=2) for row in range(grid)], dim=1)
    assert torch.equal(mosaic, upsampled)
    if grid == 1:
        assert torch.equal(crops[0], pixel_values)


def test_original_crops_carry_detail_the_upsampled_ones_lack():
    size, grid = 16, 2
    image_processor = build_clip_image_processor(size)
    # A 1-pixel checkerboard at 64 px: at 16 px it averages to grey, at 32 px (the crop mosaic) it
    # still shows stripes after bicubic filtering.
    checker = ((np.indices((64, 64)).sum(axis=0) // 2) % 2 * 255).astype(np.uint8)
    image = Image.fromarray(np.stack([checker] * 3, axis=-1))
    upsampled = ImagePreprocessor(image_processor, crop_grid=grid, crop_source="upsampled")(image)
    original = ImagePreprocessor(image_processor, crop_grid=grid, crop_source="original")(image)
    assert torch.equal(upsampled.pixel_values, original.pixel_values)
    assert upsampled.crop_pixel_values.shape == original.crop_pixel_values.shape == (4, 3, size, size)
    # The original crops equal the CLIP processing of the square at grid*size, cut into tiles.
    direct = image_processor(
        image, return_tensors="pt", size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )["pixel_values"][0]
    assert torch.equal(original.crop_pixel_values, tile_crops(direct, grid))
    assert original.crop_pixel_values.std() > 2 * upsampled.crop_pixel_values.std()
    # On a flat image both sources agree.
    flat = Image.new("RGB", (40, 40), (30, 90, 200))
    flat_up = ImagePreprocessor(image_processor, crop_grid=grid, crop_source="upsampled")(flat).crop_pixel_values
    flat_orig = ImagePreprocessor(image_processor, crop_grid=grid, crop_source="original")(flat).crop_pixel_values
    assert torch.allclose(flat_up, flat_orig, atol=1e-5)


def test_three_by_three_grid_through_the_processor(make_processor):
    processor = make_processor("qwen_2", crop_grid=3)
    tensors = processor.preprocess_image(Image.new("RGB", (30, 20), (255, 255, 0)))
    assert processor.num_crops == 9 and tensors.crop_pixel_values.shape == (9, 3, 32, 32)
    assert torch.equal(tensors.crop_pixel_values, upsampled_crops(tensors.pixel_values, 3))


def test_text_only_sample_gets_zero_image(make_processor):
    tensors = make_processor().preprocess_image(None)
    assert not tensors.pixel_values.any() and not tensors.crop_pixel_values.any()
    assert tensors.crop_pixel_values.shape == (4, 3, 32, 32)


def test_bad_crop_settings():
    with pytest.raises(TGLlavaConfigError, match="crop_source must be one of"):
        ImagePreprocessor(build_clip_image_processor(8), crop_grid=2, crop_source="native")
    with pytest.raises(TGLlavaConfigError, match="crop_grid must be >= 1"):
        ImagePreprocessor(build_clip_image_processor(8), crop_grid=0)
