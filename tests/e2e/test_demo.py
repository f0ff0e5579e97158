"""A shortened ``make demo`` end to end: every artefact exists and parses, the leaderboard's numbers
are the toolkits' own, and a second run reuses the finished phases with the same numbers."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
import torch

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "out"
    proc = subprocess.run([sys.executable, "-m", "tg_llava_eval.cli", "demo", "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (out / "first_stdout.txt").write_text(proc.stdout)
    return out


def test_every_artefact_exists_and_parses(demo_out):
    summary = json.loads((demo_out / "demo_summary.json").read_text())
    assert set(summary["phase_seconds"]) == {"data", "train", "ablate", "vlmevalkit", "lmms-eval", "report"}
    board = demo_out / "report" / "leaderboard"
    assert "| " in (board / "leaderboard.md").read_text()
    html = (board / "leaderboard.html").read_text()
    assert "<table" in html and "<img" in html
    workbook = openpyxl.load_workbook(board / "leaderboard.xlsx")
    assert any(name.startswith("main") for name in workbook.sheetnames)
    main_vlm = pd.read_csv(board / "csv" / "main_vlmevalkit.csv")
    assert set(main_vlm["Model"]) == {"TG-LLaVA-tiny", "LLaVA-1.5-tiny"}
    assert {"Synth-MCQ", "Synth-YN", "Synth-VQA"} <= set(main_vlm.columns)
    ablation = (demo_out / "report" / "ablation_report.md").read_text()
    for label in ("TG-FOM off", "TG-DP off", "both off (LLaVA-1.5)", "inference-time switch", "trained as such", "## Findings"):
        assert label in ablation
    stdout = (demo_out / "first_stdout.txt").read_text()
    assert "Headline accuracy" in stdout and "leaderboard:" in stdout
    # the trained checkpoints reload and the training reports exist for both stages of both models
    for variant in ("tiny", "tiny-baseline"):
        for stage in ("stage1", "stage2"):
            assert (demo_out / "models" / variant / stage / "model.safetensors").exists()


def test_both_toolkits_name_the_models_alike(demo_out):
    # lmms-eval names a model by its pretrained= path; report/models.csv gives it the table name.
    board = demo_out / "report" / "leaderboard"
    main_lmms = pd.read_csv(board / "csv" / "main_lmms_eval.csv")
    assert set(main_lmms["Model"]) == {"TG-LLaVA-tiny", "LLaVA-1.5-tiny"}
    for name, variant in (("TG-LLaVA-tiny", "tiny"), ("LLaVA-1.5-tiny", "tiny-baseline")):
        assert set(main_lmms[main_lmms["Model"] == name]["Variant"]) == {variant}
    markdown = (board / "leaderboard.md").read_text()
    assert str(demo_out / "models") not in markdown  # no row is named by a checkpoint path
    records = pd.read_csv(demo_out / "report" / "results.csv")
    reproduced = records[records["origin"] == "reproduced"]
    assert not any(model.startswith("/") for model in reproduced["model"])
    assert set(reproduced[reproduced["toolkit"] == "lmms-eval"]["model"]) == {"TG-LLaVA-tiny", "LLaVA-1.5-tiny"}
    samples = pd.read_csv(demo_out / "report" / "results.samples.csv")
    assert set(samples[samples["toolkit"] == "lmms-eval"]["model"]) == {"TG-LLaVA-tiny", "LLaVA-1.5-tiny"}
    # The answers of both toolkits still meet: the agreement table compares them per variant.
    agreement = pd.read_csv(board / "csv" / "toolkit_agreement.csv")
    assert set(agreement["Variant"]) == {"tiny", "tiny-baseline"} and (agreement["Samples compared"] > 0).all()


def test_both_models_start_from_the_packaged_pretrained_parts(demo_out):
    from safetensors.torch import load_file

    from tg_llava_eval.demo.settings import COMPONENTS_DIR

    llm = load_file(COMPONENTS_DIR / "llm" / "model.safetensors")
    clip = load_file(COMPONENTS_DIR / "clip" / "model.safetensors")
    for variant in ("tiny", "tiny-baseline"):
        initial = load_file(demo_out / "models" / variant / "initial" / "model.safetensors")
        for part, theirs, ours in ((llm, "model.layers.1.mlp.down_proj.weight", "language_model.model.layers.1.mlp.down_proj.weight"),
                                   (clip, "vision_model.encoder.layers.0.mlp.fc1.weight", "vision_tower.encoder.layers.0.mlp.fc1.weight"),
                                   (clip, "text_model.encoder.layers.1.self_attn.k_proj.weight", "guide_tower.encoder.layers.1.self_attn.k_proj.weight")):
            assert torch.equal(initial[ours], part[theirs]), (variant, ours)


def _vlmevalkit_value(source: Path) -> float:
    """The headline number of a VLMEvalKit score file, converted to 0-100 by the file family's rule:
    MCQ accuracy files (with a ``split`` column) hold fractions; Y/N and VQA files hold percents."""
    frame = pd.read_csv(source)
    overall = float(frame["Overall"].iloc[0])
    return overall * 100 if "split" in frame.columns else overall


def test_leaderboard_numbers_are_the_toolkits_own(demo_out):
    records = pd.read_csv(demo_out / "report" / "results.csv")
    primary = records[records["primary"] & (records["origin"] == "reproduced")]
    assert len(primary) >= 4 * 3 + 2 * 4  # 4 models x 3 sets (VLMEvalKit) + 2 models x 4 tasks (lmms-eval)
    for _, record in primary.iterrows():
        source = Path(record["source"])
        assert source.exists(), source
        if record["toolkit"] == "lmms-eval":
            results = json.loads(source.read_text())["results"][record["dataset"]]
            raw = [v for k, v in results.items() if k.endswith(",none") and "stderr" not in k and isinstance(v, float)]
            assert any(abs(100 * v - record["value"]) < 1e-9 for v in raw), (record["dataset"], raw, record["value"])
        else:
            value = _vlmevalkit_value(source)
            assert abs(value - record["value"]) < 1e-9, (source, value, record["value"])
    board = pd.read_csv(demo_out / "report" / "leaderboard" / "csv" / "main_vlmevalkit.csv")
    vlm = primary[primary["toolkit"] == "vlmevalkit"]
    for _, row in board.iterrows():
        for benchmark in ("Synth-MCQ", "Synth-YN", "Synth-VQA"):
            expected = vlm[(vlm["model"] == row["Model"]) & (vlm["benchmark"] == benchmark)]["value"]
            assert len(expected) == 1 and abs(float(expected.iloc[0]) - row[benchmark]) < 1e-9


def test_second_run_reuses_finished_phases_with_same_numbers(demo_out):
    before = json.loads((demo_out / "demo_summary.json").read_text())
    proc = subprocess.run([sys.executable, "-m", "tg_llava_eval.cli", "demo", "--quick", "--out", str(demo_out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = json.loads((demo_out / "demo_summary.json").read_text())
    assert after["reused_phases"] == ["data", "train", "ablate", "vlmevalkit", "lmms-eval", "report"]
    assert after["accuracy"] == before["accuracy"]


def test_delta_p_values_are_binomial_tests_on_the_samples_scores(demo_out):
    """Every TG-vs-baseline p-value is the exact binomial test on the discordant pairs, recomputed
    from the samples CSV's ``score`` column (the toolkits' own per-item scores)."""
    from tests.unit.results.test_item_scores import assert_p_values_match_samples

    board = demo_out / "report" / "leaderboard" / "csv"
    samples_csv = demo_out / "report" / "results.samples.csv"
    stats = sorted(board.glob("deltas_*_stats.csv"))
    assert [p.name for p in stats] == ["deltas_lmms_eval_stats.csv", "deltas_vlmevalkit_stats.csv"]
    # The demo's three VLMEvalKit sets and four lmms-eval tasks are all 0/1 accuracies.
    assert_p_values_match_samples(stats, samples_csv, minimum=7)
    scores = pd.read_csv(samples_csv, keep_default_na=False)
    assert (scores["score"] != "").all()  # every demo sample carries its toolkit's per-item score
    # the ablation report's deltas carry the same statistics: "Δ [low, high]" cells and the test named
    ablation = (demo_out / "report" / "ablation_report.md").read_text()
    assert re.search(r"[+-]\d+\.\d \[[+-]\d+\.\d, [+-]\d+\.\d\]", ablation), ablation
    assert "McNemar" in ablation
