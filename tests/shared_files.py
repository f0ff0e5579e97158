"""Where the tests find files that come from outside the repository.

Two sources, in this order:

- ``tests/data/official_parity/``: the small official parity fixtures carried in the repository
  (the key table, the full-rank outputs, the golden prompts, the preprocessing PNGs);
- the project's ``shared/`` folder beside the checkout (``$TG_LLAVA_SHARED`` overrides it): the large
  fixtures (recipe A's full outputs, the preprocessing tensors) and the upstream toolkit snapshots.

A test that needs a file neither holds is skipped with a message naming the file and both places,
so a clone without ``shared/`` runs everything it can.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The shared/ folder beside the repository (override with TG_LLAVA_SHARED).
SHARED = Path(os.environ.get("TG_LLAVA_SHARED", REPO_ROOT.parent / "shared"))
#: The official parity fixtures carried in the repository.
CARRIED_PARITY = REPO_ROOT / "tests" / "data" / "official_parity"
SHARED_PARITY = SHARED / "fixtures" / "official_parity"

#: The generator seed and draw order of the public parity inputs (fixture README, recipe A section):
#: standard-normal draws of pooled (B, 768), last hidden (B, L, 768), F_v (B, 576, 1024), crops
#: (B, 4, 576, 1024), the last two stored as float16.
PUBLIC_INPUT_SEED = 1234
PUBLIC_BATCH, PUBLIC_GUIDE_LENGTH = 2, 12
GUIDE_WIDTH, VISION_WIDTH, PATCHES, CROPS = 768, 1024, 576, 4


def official_parity_file(name: str) -> Path:
    """The path of one official parity fixture, or a skip naming where it was looked for."""
    for folder in (CARRIED_PARITY, SHARED_PARITY):
        if (folder / name).is_file():
            return folder / name
    pytest.skip(f"official parity fixture {name} is neither in {CARRIED_PARITY} nor in {SHARED_PARITY} (set TG_LLAVA_SHARED)")


def shared_file(relative: str) -> Path:
    """A file under the shared/ folder, or a skip naming it."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"{path} is missing: the shared/ folder is not beside the checkout (set TG_LLAVA_SHARED)")
    return path


def public_parity_inputs() -> dict[str, np.ndarray]:
    """The inputs of ``parity_case_public.safetensors``, regenerated from their seed.

    The stored file (31 MB) is not carried: its inputs are exact functions of the seed, and a test
    checks the regeneration against the stored file when ``shared/`` is present. float16 values are
    returned as float16 (the official forward casts them to float32, exactly).
    """
    rng = np.random.default_rng(PUBLIC_INPUT_SEED)
    b, length = PUBLIC_BATCH, PUBLIC_GUIDE_LENGTH
    return {
        "text_pooled": rng.standard_normal((b, GUIDE_WIDTH)).astype(np.float32),
        "text_last_hidden_state": rng.standard_normal((b, length, GUIDE_WIDTH)).astype(np.float32),
        "vision_features": rng.standard_normal((b, PATCHES, VISION_WIDTH)).astype(np.float16),
        "crop_features": rng.standard_normal((b, CROPS, PATCHES, VISION_WIDTH)).astype(np.float16),
    }
