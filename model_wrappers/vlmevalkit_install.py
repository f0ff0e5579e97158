"""Which VLMEvalKit is installed, and where its runner is: PyPI's package or a git checkout.

VLMEvalKit comes in two layouts (docs/vlmevalkit.md, "Two layouts"):

* **package** — PyPI's ``ms-vlmeval`` repackages VLMEvalKit with its runner as the module
  ``vlmeval/run.py``;
* **checkout** — ``git clone`` + ``pip install -e .`` (distribution ``vlmeval``): the runner is
  the repository's root ``run.py``, beside the ``vlmeval/`` package, and there is no
  ``vlmeval.run`` module.

:func:`locate_vlmevalkit` finds the runner without importing VLMEvalKit (so a missing toolkit is
one line, before any heavy import), names the distribution that provides the imported ``vlmeval``
package (both may be installed; the one first on ``sys.path`` wins the import) and, for a git
checkout, its commit. :func:`import_runner` loads the runner module of either layout.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from urllib.parse import unquote, urlparse

from tg_llava_eval.errors import TGLlavaConfigError

logger = logging.getLogger(__name__)

#: Environment variable naming the runner of a checkout (its ``run.py``, or the checkout folder).
RUNNER_ENV = "TG_LLAVA_VLMEVALKIT_RUN"
#: The distributions that install the ``vlmeval`` package: PyPI's repackaging and the git checkout's.
DISTRIBUTIONS = ("ms-vlmeval", "vlmeval")
#: Module name under which a checkout's ``run.py`` is loaded (it is not importable by name).
CHECKOUT_RUNNER_MODULE = "vlmevalkit_checkout_run"
#: Seconds ``git rev-parse`` may take (a network file system can be slow; it is never fatal).
GIT_TIMEOUT_S = 10

INSTALL_HINT = (
    "VLMEvalKit is not installed: pip install 'tg-llava-eval[ms-vlmeval]' (PyPI's ms-vlmeval), or "
    "pip install -e a VLMEvalKit git checkout (docs/install.md)"
)


@dataclass(frozen=True)
class VLMEvalKitInstall:
    """The VLMEvalKit this process would run.

    Attributes:
        layout: ``"package"`` (``vlmeval.run`` exists) or ``"checkout"`` (a repository's ``run.py``).
        runner: Path of the runner's source file.
        package_dir: The ``vlmeval`` package folder that ``import vlmeval`` loads.
        distribution: The distribution that installed that folder (``ms-vlmeval``, ``vlmeval``), or
            ``None`` for a folder on ``sys.path`` that no distribution installed.
        version: That distribution's version (``""`` without one).
        commit: The checkout's git commit (full hash), or ``None`` outside a git repository.
    """

    layout: str
    runner: Path
    package_dir: Path
    distribution: str | None
    version: str
    commit: str | None

    def describe(self) -> str:
        """One line for logs: ``vlmeval 0.1.0 (checkout /src/VLMEvalKit at e8e78f05)``."""
        name = f"{self.distribution} {self.version}" if self.distribution else "vlmeval (not installed by pip)"
        where = f"checkout {self.runner.parent}" if self.layout == "checkout" else f"package {self.package_dir}"
        return f"{name} ({where}{f' at {self.commit[:8]}' if self.commit else ''})"


def locate_vlmevalkit(runner: str | os.PathLike | None = None) -> VLMEvalKitInstall:
    """Find VLMEvalKit's runner (nothing is imported).

    Args:
        runner: A checkout's ``run.py`` or the checkout folder; default ``$TG_LLAVA_VLMEVALKIT_RUN``,
            else ``vlmeval/run.py`` when it exists, else the ``run.py`` beside the ``vlmeval``
            package (the checkout layout).

    Raises:
        TGLlavaConfigError: no ``vlmeval`` package, or no runner where it was looked for (the message
            names the places and what to install).
    """
    spec = importlib.util.find_spec("vlmeval")
    if spec is None or not spec.submodule_search_locations:
        raise TGLlavaConfigError(INSTALL_HINT)
    package_dir = Path(next(iter(spec.submodule_search_locations))).resolve()
    given = runner if runner is not None else os.environ.get(RUNNER_ENV) or None
    if given is not None:
        path = Path(given).expanduser()
        path = path / "run.py" if path.is_dir() else path
        source = "--vlmevalkit-run" if runner is not None else RUNNER_ENV
        if not path.is_file():
            raise TGLlavaConfigError(f"{source}={str(given)!r}: no VLMEvalKit run.py there (give a checkout's run.py or its folder)")
        layout, runner_path = "checkout", path.resolve()
    elif (package_dir / "run.py").is_file():
        layout, runner_path = "package", package_dir / "run.py"
    elif (package_dir.parent / "run.py").is_file():
        layout, runner_path = "checkout", package_dir.parent / "run.py"
    else:
        raise TGLlavaConfigError(
            f"VLMEvalKit at {package_dir} has neither vlmeval/run.py (PyPI's ms-vlmeval) nor a run.py beside it "
            f"(a git checkout); point {RUNNER_ENV} or --vlmevalkit-run at a checkout's run.py"
        )
    distribution, version = _providing_distribution(package_dir)
    commit = _git_commit(runner_path.parent) if layout == "checkout" else None
    return VLMEvalKitInstall(layout, runner_path, package_dir, distribution, version, commit)


def import_runner(install: VLMEvalKitInstall) -> ModuleType:
    """Import the runner module of ``install`` (``vlmeval.run``, or a checkout's ``run.py``).

    A checkout's ``run.py`` is loaded from its file under :data:`CHECKOUT_RUNNER_MODULE`, as
    ``python run.py`` would run it but without its ``__main__`` block (the caller calls ``main()``).
    """
    if install.layout == "package":
        return importlib.import_module("vlmeval.run")
    spec = importlib.util.spec_from_file_location(CHECKOUT_RUNNER_MODULE, install.runner)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _providing_distribution(package_dir: Path) -> tuple[str | None, str]:
    """The installed distribution whose files are ``package_dir``, and its version.

    A regular install lists the package's files; an editable install (``pip install -e``) records
    the checkout in ``direct_url.json``. When both distributions are installed only one provides
    the folder Python imports; the other is named in a warning (it is a trap: docs/install.md).
    """
    found, shadowed = None, []
    for name in DISTRIBUTIONS:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if found is None and _provides(dist, package_dir):
            found = (name, dist.version)
        else:
            shadowed.append(f"{name} {dist.version}")
    if found is not None and shadowed:
        logger.warning("VLMEvalKit: %s is also installed but %s %s provides the imported vlmeval (%s)",
                       ", ".join(shadowed), found[0], found[1], package_dir)
    return found if found is not None else (None, "")


def _provides(dist: importlib.metadata.Distribution, package_dir: Path) -> bool:
    init = dist.locate_file("vlmeval/__init__.py")
    if Path(str(init)).resolve() == package_dir / "__init__.py":
        return True
    direct_url = dist.read_text("direct_url.json")
    if not direct_url:
        return False
    try:
        url = json.loads(direct_url).get("url", "")
    except json.JSONDecodeError:
        return False
    if not url.startswith("file://"):
        return False
    source = Path(unquote(urlparse(url).path)).resolve()
    return package_dir == source / "vlmeval"


def _git_commit(folder: Path) -> str | None:
    """The commit checked out in ``folder``, when ``folder`` is the top of a git repository.

    ``None`` when it is not one (an unpacked archive), or only sits inside another repository
    (whose commit would say nothing about VLMEvalKit), or git is missing.
    """
    try:
        proc = subprocess.run(["git", "-C", str(folder), "rev-parse", "--show-toplevel", "HEAD"], capture_output=True,
                              text=True, timeout=GIT_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = proc.stdout.split()
    if proc.returncode != 0 or len(lines) != 2 or Path(lines[0]).resolve() != folder.resolve():
        return None
    return lines[1]
