"""The built wheel works without the repository: ``tg-llava-eval demo --quick`` from a fresh venv,
run in a folder outside the checkout (the demo's VLMEvalKit phase goes through the packaged runner,
not the repository's ``run.py``).

The fresh venv gets the wheel alone; its dependencies (torch, the toolkits, ...) come from the
project venv through a plain path entry, which adds that site-packages folder to ``sys.path``
without running its ``.pth`` files, so the editable install of the checkout is not active there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
#: What a wheel build needs from the checkout (the rest — tests, bench, docs — is not packaged).
_SOURCES = ("setup.cfg", "pyproject.toml", "README.md", "tg_llava_eval", "model_wrappers", "training", "results", "leaderboards")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in _SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, source / name)
    out = tmp_path_factory.mktemp("dist")
    build = "from setuptools import build_meta; import sys; print(build_meta.build_wheel(sys.argv[1]))"
    proc = subprocess.run([sys.executable, "-c", build, str(out)], cwd=source, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def fresh_python(wheel, tmp_path_factory) -> Path:
    env_dir = tmp_path_factory.mktemp("venv") / "env"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    purelib = Path(subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip())
    (purelib / "project_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    with zipfile.ZipFile(wheel) as archive:  # a wheel is installed by unpacking it (no pip in the venv)
        archive.extractall(purelib)
    _write_console_scripts(wheel, purelib, env_dir / "bin", python)
    return python


def _write_console_scripts(wheel: Path, purelib: Path, bin_dir: Path, python: Path) -> None:
    """The wheel's console scripts, as an installer would write them."""
    import configparser

    dist_info = next(purelib.glob("tg_llava_eval-*.dist-info"))
    points = configparser.ConfigParser()
    points.read(dist_info / "entry_points.txt")
    for name, target in points["console_scripts"].items():
        module, function = target.split(":")
        script = bin_dir / name
        script.write_text(f"#!{python}\nimport sys\nfrom {module} import {function}\nsys.exit({function}())\n")
        script.chmod(0o755)


def test_the_wheel_carries_the_package_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "tg_llava_eval/model_wrappers/vlmevalkit_run.py" in names
    assert any(n.startswith("tg_llava_eval/demo_components/") for n in names)
    assert any(n.startswith("tg_llava_eval/training/deepspeed_configs/") for n in names)
    assert not any(n.startswith(("tests/", "run.py")) for n in names)


def test_quick_demo_from_the_wheel_outside_the_checkout(fresh_python, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    where = subprocess.run([str(fresh_python), "-c", "import tg_llava_eval; print(tg_llava_eval.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr[-2000:]
    assert not Path(where.stdout.strip()).is_relative_to(REPO), f"imported from the checkout: {where.stdout}"
    out = tmp_path / "demo_out"
    proc = subprocess.run([str(fresh_python.parent / "tg-llava-eval"), "demo", "--quick", "--out", str(out)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (out / "report" / "leaderboard" / "leaderboard.md").is_file()
    assert any((out / "eval" / "vlmevalkit").rglob("tg_llava_run.json"))  # written by the packaged runner
