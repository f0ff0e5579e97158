"""The official parity fixtures carried in tests/data are byte copies of the shared originals."""

from __future__ import annotations

import pytest

from tests.shared_files import CARRIED_PARITY, SHARED_PARITY

CARRIED = sorted(path.name for path in CARRIED_PARITY.iterdir() if path.name != "README.md")


def test_the_small_fixtures_are_carried():
    assert CARRIED == [
        "keys_official.json",
        "parity_case_public_fullrank.safetensors",
        "preprocess_img0_rgb_80x50.png",
        "preprocess_img1_rgba_50x120.png",
        "preprocess_img2_l_64x64.png",
        "prompts_golden.json",
    ]


@pytest.mark.parametrize("name", CARRIED)
def test_carried_copy_equals_the_shared_original(name):
    original = SHARED_PARITY / name
    if not original.is_file():
        pytest.skip(f"{original} is missing: the shared/ folder is not beside the checkout (set TG_LLAVA_SHARED)")
    assert (CARRIED_PARITY / name).read_bytes() == original.read_bytes()
