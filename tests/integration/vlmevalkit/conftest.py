"""Fixtures of the VLMEvalKit end-to-end tests: the upstream checkout layout (installed once)."""

from __future__ import annotations

import pytest
from vlmevalkit_layouts import Checkout, install_checkout


@pytest.fixture(scope="session")
def vlmevalkit_checkout(tmp_path_factory) -> Checkout:
    """Upstream VLMEvalKit as a git checkout with an editable install (see ``vlmevalkit_layouts.py``)."""
    return install_checkout(tmp_path_factory.mktemp("vlmevalkit_checkout"))
