"""The two VLMEvalKit layouts the end-to-end tests run on.

* ``package`` — PyPI's ms-vlmeval, installed in the test environment (``vlmeval/run.py``);
* ``checkout`` — upstream VLMEvalKit as most users have it: the snapshot in the shared folder
  (``toolkits/VLMEvalKit-*.tar.gz``) unpacked into a temporary folder, made a git repository, and
  installed the way ``pip install -e .`` does it (an editable ``vlmeval`` distribution whose
  ``direct_url.json`` names the checkout) into an overlay folder. ``PYTHONPATH=overlay:checkout``
  then makes ``import vlmeval`` load the checkout (shadowing ms-vlmeval, as an editable install
  does) while the overlay supplies its distribution metadata. No file of the test environment
  changes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.shared_files import SHARED

LAYOUTS = ("package", "checkout")
#: Upstream's litellm fetches a model cost map over the network at import unless told not to.
OFFLINE_TOOLKIT_ENV = {"LITELLM_LOCAL_MODEL_COST_MAP": "True"}
_GIT_IDENTITY = {"GIT_AUTHOR_NAME": "tests", "GIT_AUTHOR_EMAIL": "tests@localhost",
                 "GIT_COMMITTER_NAME": "tests", "GIT_COMMITTER_EMAIL": "tests@localhost"}


@dataclass(frozen=True)
class Checkout:
    """An upstream VLMEvalKit checkout installed for the tests.

    Attributes:
        root: The repository folder (``run.py``, ``vlmeval/``).
        commit: Its git commit.
        version: The version its ``setup.py`` declares (what pip records).
        env: Environment variables that make a subprocess import this checkout.
    """

    root: Path
    commit: str
    version: str
    env: dict[str, str]


def upstream_snapshot() -> Path:
    """The upstream snapshot archive, or a skip naming where it was looked for."""
    found = sorted((SHARED / "toolkits").glob("VLMEvalKit-*.tar.gz"))
    if not found:
        pytest.skip(f"no upstream VLMEvalKit snapshot {SHARED / 'toolkits' / 'VLMEvalKit-*.tar.gz'} "
                    "(the shared/ folder is not beside the checkout; set TG_LLAVA_SHARED)")
    return found[-1]


def install_checkout(folder: Path) -> Checkout:
    """Unpack the snapshot under ``folder``, commit it to a new git repository, install it editable."""
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH (make setup installs it); it installs the checkout without network")
    root = folder / "VLMEvalKit"
    root.mkdir(parents=True)
    with tarfile.open(upstream_snapshot()) as archive:
        archive.extractall(root, filter="data")
    env = {**os.environ, **_GIT_IDENTITY}
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "upstream snapshot"]):
        subprocess.run(["git", "-C", str(root), *command], check=True, env=env, capture_output=True)
    commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], check=True, capture_output=True,
                            text=True).stdout.strip()
    overlay = folder / "overlay"
    # --no-build-isolation: setuptools of the test environment builds it, offline.
    proc = subprocess.run([uv, "pip", "install", "-q", "--offline", "--no-build-isolation", "--no-deps",
                           "--python", sys.executable, "--target", str(overlay), "-e", str(root)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    version = next(overlay.glob("vlmeval-*.dist-info")).name[len("vlmeval-"):-len(".dist-info")]
    pythonpath = os.pathsep.join([str(overlay), str(root), *filter(None, [os.environ.get("PYTHONPATH")])])
    return Checkout(root, commit, version, {"PYTHONPATH": pythonpath, **OFFLINE_TOOLKIT_ENV})
