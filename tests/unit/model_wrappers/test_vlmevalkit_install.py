"""Finding VLMEvalKit's runner in both layouts without importing VLMEvalKit.

The package layout is the test environment's ms-vlmeval; the checkout cases put a small folder
first on ``sys.path`` in a fresh interpreter (this process may have imported ms-vlmeval already).
The real upstream checkout runs end to end in ``tests/integration/vlmevalkit``.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

from tests.python_probe import run_python_probe
from tg_llava_eval.errors import TGLlavaConfigError
from tg_llava_eval.model_wrappers.vlmevalkit_install import RUNNER_ENV, locate_vlmevalkit

REPO_ROOT = Path(__file__).resolve().parents[3]
pytest.importorskip("vlmeval")


def _fake_checkout(root: Path, *, run_py: bool = True) -> Path:
    (root / "vlmeval").mkdir(parents=True)
    (root / "vlmeval" / "__init__.py").write_text("")
    if run_py:
        (root / "run.py").write_text("def main():\n    pass\n")
    return root


def _probe(root: Path, body: str) -> None:
    run_python_probe(
        f"import sys; sys.path.insert(0, {str(root)!r})\n"
        "from pathlib import Path\n"
        "from tg_llava_eval.model_wrappers.vlmevalkit_install import locate_vlmevalkit\n"
        "from tg_llava_eval.errors import TGLlavaConfigError\n" + body
    )


def test_the_package_layout_is_pypis_ms_vlmeval(monkeypatch):
    monkeypatch.delenv(RUNNER_ENV, raising=False)
    install = locate_vlmevalkit()
    assert (install.layout, install.distribution, install.commit) == ("package", "ms-vlmeval", None)
    assert install.version == importlib.metadata.version("ms-vlmeval")
    assert install.runner == install.package_dir / "run.py"
    assert install.describe().startswith(f"ms-vlmeval {install.version} (package ")


def test_a_checkout_is_found_beside_its_package(tmp_path):
    root = _fake_checkout(tmp_path / "VLMEvalKit")
    _probe(root, (
        "install = locate_vlmevalkit()\n"
        f"assert install.layout == 'checkout' and install.runner == Path({str(root / 'run.py')!r}), install\n"
        # no distribution installed this folder (ms-vlmeval's files are elsewhere), no git repository
        "assert (install.distribution, install.version, install.commit) == (None, '', None), install\n"
    ))


def test_a_git_checkout_names_its_commit(tmp_path):
    root = _fake_checkout(tmp_path / "VLMEvalKit")
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "x"]):
        subprocess.run(["git", "-C", str(root), *command], check=True, capture_output=True, env={**env, "PATH": "/usr/bin:/bin"})
    commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    _probe(root, f"assert locate_vlmevalkit().commit == {commit!r}\n")
    # a folder inside someone else's repository is not a checkout of its own: no commit
    nested = _fake_checkout(root / "vendored")
    _probe(nested, "assert locate_vlmevalkit().commit is None\n")


def test_the_runner_can_be_named(tmp_path, monkeypatch):
    root = _fake_checkout(tmp_path / "VLMEvalKit")
    for given in (root, root / "run.py"):
        assert locate_vlmevalkit(given).runner == root / "run.py"
        monkeypatch.setenv(RUNNER_ENV, str(given))
        assert locate_vlmevalkit().layout == "checkout"
    with pytest.raises(TGLlavaConfigError, match=r"--vlmevalkit-run='/no/such': no VLMEvalKit run.py there"):
        locate_vlmevalkit("/no/such")
    monkeypatch.setenv(RUNNER_ENV, str(tmp_path))
    with pytest.raises(TGLlavaConfigError, match=f"{RUNNER_ENV}=.*no VLMEvalKit run.py there"):
        locate_vlmevalkit()


def test_no_runner_and_no_toolkit_are_one_line(tmp_path):
    root = _fake_checkout(tmp_path / "bare", run_py=False)
    _probe(root, (
        "try:\n    locate_vlmevalkit()\nexcept TGLlavaConfigError as err:\n"
        "    assert 'has neither vlmeval/run.py' in str(err) and 'TG_LLAVA_VLMEVALKIT_RUN' in str(err), err\n"
        "else:\n    raise AssertionError('no error')\n"
    ))
    run_python_probe(
        "import sys; sys.modules['vlmeval'] = None\n"  # as on a machine without VLMEvalKit
        "from tg_llava_eval.model_wrappers.vlmevalkit_install import locate_vlmevalkit, INSTALL_HINT\n"
        "from tg_llava_eval.errors import TGLlavaConfigError\n"
        "try:\n    locate_vlmevalkit()\nexcept TGLlavaConfigError as err:\n    assert str(err) == INSTALL_HINT\n"
        "else:\n    raise AssertionError('no error')\n"
    )


def test_the_runner_cli_says_it_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "run.py"), "--vlmevalkit-run", str(tmp_path / "missing"),
                           "--model", "tg_llava", "--data", "x"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "no VLMEvalKit run.py there" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
