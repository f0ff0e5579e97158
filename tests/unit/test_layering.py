"""Architecture rules that can be checked mechanically (STYLE rules 1, 4, 6, 10, 11)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.python_probe import run_python_probe

REPO = Path(__file__).resolve().parents[2]
LIBRARY_DIRS = ["tg_llava_eval", "model_wrappers", "training", "results", "leaderboards"]


def library_files() -> list[Path]:
    return [p for d in LIBRARY_DIRS for p in (REPO / d).rglob("*.py")]


# `sys.modules[name] = None` makes `import name` fail and `find_spec(name)` report it as absent,
# exactly as on a machine where the package is not installed.
BLOCKER = """
import sys
BLOCKED = {blocked!r}
for name in BLOCKED:
    sys.modules[name] = None
import {modules}
leaked = sorted(m for m, v in sys.modules.items() if v is not None and m.split(".")[0] in BLOCKED)
assert not leaked, leaked
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "modules, blocked",
    [
        # the model side never needs the trainer's or the toolkits' packages (docs/architecture.md)
        ("tg_llava_eval.modeling, tg_llava_eval.processing, tg_llava_eval.inference, tg_llava_eval.variants",
         ["deepspeed", "vlmeval", "lmms_eval"]),
        # results and leaderboards are plain pandas; the variant catalogue and the lmms-eval entry
        # point (loaded by every `import lmms_eval.models`) are plain data, and so are the templates
        ("tg_llava_eval, tg_llava_eval.results, tg_llava_eval.leaderboards, tg_llava_eval.variants, "
         "tg_llava_eval.conversation, "
         "tg_llava_eval.model_wrappers.lmms_eval_registration", ["torch", "transformers"]),
    ],
)
def test_import_without_forbidden_dependencies(modules, blocked):
    run_python_probe(BLOCKER.format(blocked=blocked, modules=modules))


FORBIDDEN = {
    r"(?<![\w.])print\(": "print in library code (use logging; CLI mains excepted)",
    r"setattr\(torch": "attribute assignment on torch",
    r"torch\.load\((?![^)]*weights_only=True)": "torch.load without weights_only=True",
    r"trust_remote_code\s*=\s*True": "trust_remote_code",
    r"\bin (self\.)?model_(name|path)\b": "dispatch by model name/path substring",
    r"(model_name|model_path)\.lower\(\)": "dispatch by lower-cased model name",
    r"pickle\.load": "pickle loading",
}
# CLI entry points write their real output to stdout.
PRINT_ALLOWED = {"tg_llava_eval/cli"}


def test_no_forbidden_patterns_in_library_code():
    problems = []
    for path in library_files():
        text = path.read_text()
        rel = path.relative_to(REPO).as_posix()
        for pattern, why in FORBIDDEN.items():
            if why.startswith("print") and any(rel.startswith(p) for p in PRINT_ALLOWED):
                continue
            for match in re.finditer(pattern, text):
                line = text.count("\n", 0, match.start()) + 1
                problems.append(f"{rel}:{line}: {why}")
    assert not problems, "\n".join(problems)


#: Imports of the demo package (absolute or relative).
DEMO_IMPORT = re.compile(r"^\s*(from\s+(tg_llava_eval\.demo\b|\.+demo\b)|import\s+tg_llava_eval\.demo\b"
                         r"|from\s+(tg_llava_eval|\.+)\s+import\s+demo\b)", re.MULTILINE)
#: The demo may import the library; of the library only the command that starts it imports the demo.
DEMO_IMPORT_ALLOWED = ("tg_llava_eval/demo/", "tg_llava_eval/cli/demo.py")


def test_the_library_does_not_import_the_demo():
    """Applications sit at the edge: the demo imports the library, never the other way."""
    problems = []
    for path in library_files():
        rel = path.relative_to(REPO).as_posix()
        if rel.startswith(DEMO_IMPORT_ALLOWED):
            continue
        text = path.read_text()
        for match in DEMO_IMPORT.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            problems.append(f"{rel}:{line}: imports the demo")
    assert not problems, "\n".join(problems)


def test_library_files_document_themselves():
    """STYLE rule 12: every library module starts with a docstring."""
    missing = []
    for path in library_files():
        text = path.read_text().lstrip()
        if text and not text.startswith(('"""', "'''", 'r"""')):
            missing.append(path.relative_to(REPO).as_posix())
    assert not missing, missing


#: Checkpoint code: the package that reads, assembles, creates and converts checkpoints.
CHECKPOINTS = "tg_llava_eval.checkpoints"
#: The one place in modeling that may import checkpoint code: the classmethod that delegates to it,
#: inside its body (so importing modeling never loads checkpoint code).
CHECKPOINT_DELEGATES = {"from_components"}


def _imported_names(node: ast.Import | ast.ImportFrom, package: str) -> list[str]:
    """Absolute names an import statement in ``package`` loads (``from X import a`` gives X, X.a)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        parent = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join(parent + ([node.module] if node.module else []))
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def _checkpoint_imports(path: Path, package: str) -> list[tuple[int, str | None]]:
    """``(line, enclosing function or None)`` of every import of checkpoint code in ``path``."""
    found = []

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                names = _imported_names(child, package)
                if any(name == CHECKPOINTS or name.startswith(CHECKPOINTS + ".") for name in names):
                    found.append((child.lineno, function))
            inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
            visit(child, inner)

    visit(ast.parse(path.read_text()), None)
    return found


@pytest.mark.slow
def test_modeling_does_not_import_checkpoint_code():
    """Modeling holds nn.Modules and no I/O: checkpoint code builds on it, never the other way.

    No modeling module imports ``tg_llava_eval.checkpoints`` at module level (nor in any function
    but the ``from_components`` delegate), and importing the model side loads none of it.
    """
    problems = []
    for path in sorted((REPO / "tg_llava_eval" / "modeling").rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
        for line, function in _checkpoint_imports(path, package):
            if function not in CHECKPOINT_DELEGATES:
                where = "at module level" if function is None else f"in {function}()"
                problems.append(f"{rel}:{line}: imports checkpoint code {where}")
    assert not problems, "\n".join(problems)
    run_python_probe(
        "import sys\n"
        "import tg_llava_eval.modeling, tg_llava_eval.processing, tg_llava_eval.inference\n"
        f"leaked = sorted(m for m in sys.modules if m.startswith({CHECKPOINTS!r}))\n"
        "assert not leaked, leaked\n"
    )


def test_the_checkpoint_check_sees_a_modeling_import(tmp_path):
    """The check above fails for a module-level import of checkpoint code, absolute or relative."""
    for source in ("from ..checkpoints.reading import read_state_dict\n",
                   "from tg_llava_eval.checkpoints import assemble_model\n",
                   "from .. import checkpoints\n",
                   "def helper():\n    import tg_llava_eval.checkpoints.loading\n"):
        module = tmp_path / "modeling_example.py"
        module.write_text(source)
        found = _checkpoint_imports(module, "tg_llava_eval.modeling")
        assert found and all(function not in CHECKPOINT_DELEGATES for _, function in found), source
    module.write_text("class M:\n    def from_components(cls):\n        from ..checkpoints.assembling import assemble_model\n")
    assert _checkpoint_imports(module, "tg_llava_eval.modeling") == [(3, "from_components")]
