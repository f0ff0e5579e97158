"""Display names from the model mapping's ``name`` column, on the real toolkit output trees.

lmms-eval names a model by its ``pretrained=`` path, VLMEvalKit by its model folder. A mapping row
``<toolkit name>,<variant>,<name>`` makes that model's records and sample predictions carry
``model=<name>`` in both parsers; the toolkit's own name stays in ``CollectResult.renamed``, in
the file each record's ``source`` points at, and in the CLI's summary.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tg_llava_eval.cli import main
from tg_llava_eval.results import ParseContext, collect, read_model_mapping, read_records_csv, read_samples_csv

TOOLKIT_OUTPUTS = Path(__file__).resolve().parents[3] / "tests" / "data" / "toolkit_outputs"
TG, BASE = "TG-LLaVA-Vicuna-13B", "LLaVA-1.5-Vicuna-13B-TG"
TG_LMMS, BASE_LMMS = "ckpts/tg-llava-vicuna-13b", "ckpts/llava-1.5-vicuna-13b"
TREES = [TOOLKIT_OUTPUTS / "vlmevalkit_flat", TOOLKIT_OUTPUTS / "lmms_eval"]


def write_mapping(path: Path, rows: list[str]) -> Path:
    path.write_text("model,variant,name\n" + "".join(f"{row}\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def plain():
    return collect(TREES, ParseContext())


@pytest.fixture(scope="module")
def renamed(tmp_path_factory):
    """The lmms-eval TG model named like its VLMEvalKit folder; the VLMEvalKit baseline renamed."""
    mapping = write_mapping(tmp_path_factory.mktemp("mapping") / "models.csv", [
        f"{TG_LMMS},tg-llava-vicuna-13b,{TG}",
        f"{BASE},llava-1.5-vicuna-13b,LLaVA-1.5 (13B)",
    ])
    return collect(TREES, ParseContext(mapping=read_model_mapping(mapping)))


def test_records_of_a_named_model_carry_the_name(plain, renamed):
    names = {(r.toolkit, r.model) for r in renamed.records}
    assert names == {("vlmevalkit", TG), ("vlmevalkit", "LLaVA-1.5 (13B)"), ("lmms-eval", TG), ("lmms-eval", BASE_LMMS)}
    # Nothing but the name changes: same records, values, identities and sources.
    def without_model(records):
        return sorted((r.replace(model="").key(), r.value, r.method, r.llm, r.source) for r in records)

    assert without_model(renamed.records) == without_model(plain.records)
    assert len(renamed.records) == len(plain.records)


def test_the_toolkit_name_stays_traceable(renamed):
    assert renamed.renamed == {("lmms-eval", TG_LMMS): TG, ("vlmevalkit", BASE): "LLaVA-1.5 (13B)"}
    for record in renamed.records:
        if record.toolkit == "lmms-eval" and record.model == TG:
            assert json.loads(Path(record.source).read_text())["model_name"] == TG_LMMS
        if record.model == "LLaVA-1.5 (13B)":
            assert Path(record.source).name.startswith(f"{BASE}_")


def test_samples_carry_the_same_name_and_join_across_toolkits(plain, renamed):
    assert {(s.toolkit, s.model) for s in renamed.samples} == {(r.toolkit, r.model) for r in renamed.records}
    assert len(renamed.samples) == len(plain.samples)
    # One name per model: both toolkits' answers to a sample meet on (model, dataset, sample_id).
    answers: dict[tuple[str, str, str], dict[str, str]] = {}
    for sample in renamed.samples:
        if sample.model == TG:
            answers.setdefault((sample.model, sample.dataset, sample.sample_id), {})[sample.toolkit] = sample.prediction
    both = [a for a in answers.values() if len(a) == 2]
    assert len(both) == 8 + 8 + 8 + 8 + 28  # tinymcq, tinyyorn, tinyPOPE, tinyvqa, tiny_MME
    assert all(a["vlmevalkit"] == a["lmms-eval"] for a in both)  # one oracle behind both toolkits


def test_the_name_only_applies_to_an_exact_match(tmp_path):
    mapping = write_mapping(tmp_path / "models.csv", [f"{TG_LMMS}/,tg-llava-vicuna-13b,{TG}", "tg-llava,tg-llava-vicuna-13b,X"])
    result = collect([TOOLKIT_OUTPUTS / "lmms_eval"], ParseContext(mapping=read_model_mapping(mapping), read_samples=False))
    assert {r.model for r in result.records} == {TG_LMMS, BASE_LMMS} and result.renamed == {}


def test_collect_cli_writes_and_prints_the_names(tmp_path, capsys):
    mapping = write_mapping(tmp_path / "models.csv", [f"{TG_LMMS},tg-llava-vicuna-13b,{TG}"])
    results = tmp_path / "results.csv"
    assert main(["collect", *map(str, TREES), "-o", str(results), "--models", str(mapping), "--no-progress"]) == 0
    assert f"lmms-eval '{TG_LMMS}' -> '{TG}'" in capsys.readouterr().out
    assert {(r.toolkit, r.model) for r in read_records_csv(results) if r.variant == "tg-llava-vicuna-13b"} == {
        ("vlmevalkit", TG), ("lmms-eval", TG)}
    samples = read_samples_csv(tmp_path / "results.samples.csv")
    assert TG_LMMS not in {s.model for s in samples}


def test_collect_cli_names_the_bad_mapping_line(tmp_path, caplog):
    mapping = write_mapping(tmp_path / "models.csv", [f"{TG_LMMS},tg-llava-vicuna-13b,{TG}", f"{BASE_LMMS},llava-1.5-vicuna-13b,{TG}"])
    assert main(["collect", str(TOOLKIT_OUTPUTS / "lmms_eval"), "-o", str(tmp_path / "r.csv"), "--models", str(mapping)]) == 1
    assert any(str(mapping) in m and f"line 3: display name '{TG}'" in m for m in caplog.messages), caplog.messages
    assert not (tmp_path / "r.csv").exists()
