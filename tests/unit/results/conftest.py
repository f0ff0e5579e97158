"""Fixtures of the results tests: the committed toolkit output trees and their parsed records.

The trees under ``tests/data/toolkit_outputs`` were written by the real VLMEvalKit and lmms-eval
(``tools/regen_toolkit_outputs.py``; the folder's README says which files are real and which are
derived). Parsing them is the expensive part of these tests, so each tree is collected once per
session.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tg_llava_eval.results import BenchmarkRegistry, ParseContext, collect, load_benchmark_specs

REPO = Path(__file__).resolve().parents[3]
TOOLKIT_OUTPUTS = REPO / "tests" / "data" / "toolkit_outputs"
BENCHMARK_SPECS = TOOLKIT_OUTPUTS / "benchmarks.json"


def fixture_registry() -> BenchmarkRegistry:
    """The default registry extended with the fixture datasets' specs."""
    registry = BenchmarkRegistry()
    registry.extend(*load_benchmark_specs(BENCHMARK_SPECS))
    return registry


@pytest.fixture(scope="session")
def toolkit_outputs() -> Path:
    return TOOLKIT_OUTPUTS


@pytest.fixture(scope="session")
def collected():
    """``{tree name: CollectResult}`` for the four committed trees (default registry)."""
    return {
        name: collect([TOOLKIT_OUTPUTS / name], ParseContext())
        for name in ("vlmevalkit_flat", "vlmevalkit_upstream", "vlmevalkit_legacy", "lmms_eval")
    }


@pytest.fixture(scope="session")
def collected_with_specs():
    """Flat VLMEvalKit + lmms-eval trees collected with the fixture benchmark specs."""
    return collect([TOOLKIT_OUTPUTS / "vlmevalkit_flat", TOOLKIT_OUTPUTS / "lmms_eval"], ParseContext(registry=fixture_registry()))
