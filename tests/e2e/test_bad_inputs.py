"""Bad input through the real command lines: one line naming the input, the right exit status, no
traceback, nothing half-written.

Each case runs the real program in a subprocess (``tg-llava-eval ...`` or the VLMEvalKit runner
``run.py``) and asserts:

* the exit status: 2 for a usage error (a wrong path, a folder of the wrong kind, an unknown name, an
  impossible value), 1 for a failure found while working (a file whose content is wrong);
* that the output names the input (the message, with the case's paths filled in);
* that no Python traceback is printed;
* that the output the command would have written does not exist (``{out}``, ``{out_csv}``,
  ``{board}``), where the case has one.

What each kind of bad input gets is described in docs/errors.md; this table is the full list.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
OUTPUTS = REPO / "tests" / "data" / "toolkit_outputs"
CLI = (sys.executable, "-m", "tg_llava_eval.cli")
RUN_PY = (sys.executable, str(REPO / "run.py"))
#: Words of a question beyond the tiny LLM's context (max_length 2048 tokens).
TOO_LONG_WORDS = 9000
TIMEOUT_S = 600


@dataclass(frozen=True)
class Case:
    """One bad input: ``argv`` and ``message`` may hold ``{name}`` placeholders of :func:`paths`."""

    id: str
    argv: tuple[str, ...]
    status: int
    message: str
    program: tuple[str, ...] = CLI
    absent: str | None = None


def _cli(id, argv, status, message, absent=None):
    return Case(id, tuple(argv), status, message, CLI, absent)


def _run_py(id, argv, status, message, absent=None):
    return Case(id, tuple(argv), status, message, RUN_PY, absent)


CASES = [
    # ---- create
    _cli("create-unknown-variant", ["create", "--variant", "tg-llava-qwen", "-o", "{out}"], 2,
         "unknown variant 'tg-llava-qwen' (did you mean tg-llava-qwen2-7b", "{out}"),
    _cli("create-output-is-a-file", ["create", "-o", "{file}"], 2, "'{file}' is a file, not a folder"),
    _cli("create-output-holds-other-files", ["create", "-o", "{busy}"], 2,
         "'{busy}' is not empty and holds no checkpoint"),
    _cli("create-missing-vision", ["create", "--vision", "{missing}", "--llm", "{ckpt}", "-o", "{out}"], 2,
         "--vision '{missing}': no such folder", "{out}"),
    _cli("create-vision-not-a-checkpoint", ["create", "--vision", "{empty}", "--llm", "{ckpt}", "-o", "{out}"], 2,
         "--vision '{empty}': has no config.json", "{out}"),
    _cli("create-vision-without-llm", ["create", "--vision", "{ckpt}", "-o", "{out}"], 2,
         "needs both --vision and --llm", "{out}"),
    _cli("create-vision-of-the-wrong-kind", ["create", "--vision", "{ckpt}", "--llm", "{ckpt}", "-o", "{out}"], 2,
         "{ckpt}", "{out}"),
    _cli("create-tokenizer-is-a-file", ["create", "--tokenizer", "{file}", "-o", "{out}"], 2,
         "--tokenizer '{file}': is a file, expected a folder", "{out}"),
    _cli("create-bad-seed", ["create", "--seed", "abc", "-o", "{out}"], 2, "invalid int value: 'abc'", "{out}"),
    # ---- convert
    _cli("convert-missing", ["convert", "{missing}", "-o", "{out}", "--variant", "tiny"], 2,
         "official checkpoint '{missing}': no such folder", "{out}"),
    _cli("convert-not-a-checkpoint", ["convert", "{empty}", "-o", "{out}", "--variant", "tiny"], 2,
         "official checkpoint '{empty}': has no config.json", "{out}"),
    _cli("convert-no-weights", ["convert", "{config_only}", "-o", "{out}", "--variant", "tiny"], 2,
         "official checkpoint '{config_only}': has no weight files", "{out}"),
    _cli("convert-unknown-variant", ["convert", "{ckpt}", "-o", "{out}", "--variant", "nope"], 2,
         "unknown variant 'nope'", "{out}"),
    _cli("convert-output-is-a-file", ["convert", "{ckpt}", "-o", "{file}", "--variant", "tiny"], 2,
         "-o/--output '{file}' is a file"),
    _cli("convert-not-official", ["convert", "{ckpt}", "-o", "{out}", "--variant", "tiny"], 1, "{ckpt}", "{out}"),
    _cli("convert-no-variant", ["convert", "{ckpt}", "-o", "{out}"], 2,
         "the following arguments are required: --variant", "{out}"),
    # ---- chat
    _cli("chat-missing-model", ["chat", "--model", "{missing}", "--image", "{png}", "q"], 2,
         "--model '{missing}': no such folder"),
    _cli("chat-empty-model", ["chat", "--model", "{empty}", "q"], 2, "--model '{empty}': has no config.json"),
    _cli("chat-model-is-a-file", ["chat", "--model", "{file}", "q"], 2, "--model '{file}': is a file"),
    _cli("chat-model-without-weights", ["chat", "--model", "{config_only}", "q"], 2,
         "--model '{config_only}': has no weight files"),
    _cli("chat-missing-image", ["chat", "--model", "{ckpt}", "--image", "{missing}.png", "q"], 2,
         "--image '{missing}.png': no such file"),
    _cli("chat-image-is-a-folder", ["chat", "--model", "{ckpt}", "--image", "{empty}", "q"], 2,
         "--image '{empty}': is a folder"),
    _cli("chat-empty-question", ["chat", "--model", "{ckpt}", "--image", "{png}", "  "], 2, "the question is empty"),
    _cli("chat-zero-new-tokens", ["chat", "--model", "{ckpt}", "--max-new-tokens", "0", "q"], 2,
         "--max-new-tokens must be a positive integer, got 0"),
    _cli("chat-negative-temperature", ["chat", "--model", "{ckpt}", "--temperature", "-1", "q"], 2,
         "--temperature -1.0: must be >= 0"),
    _cli("chat-corrupt-image", ["chat", "--model", "{ckpt}", "--image", "{corrupt}", "q"], 1, "corrupt.png"),
    _cli("chat-question-beyond-the-context", ["chat", "--model", "{ckpt}", "--image", "{png}", "{long}"], 1,
         "at or over max_length=2048"),
    _cli("chat-unknown-template", ["chat", "--model", "{ckpt}", "--template", "qwen3", "q"], 2,
         "unknown conversation template 'qwen3'"),
    _cli("chat-unknown-dtype", ["chat", "--model", "{ckpt}", "--dtype", "float13", "q"], 2, "unknown dtype 'float13'"),
    # ---- collect
    _cli("collect-missing-path", ["collect", "{missing}", "-o", "{out_csv}"], 2,
         "PATH '{missing}': no such file or folder", "{out_csv}"),
    _cli("collect-output-is-a-folder", ["collect", "{outputs}", "-o", "{empty}"], 2,
         "-o/--output '{empty}': is a folder"),
    _cli("collect-missing-mapping", ["collect", "{outputs}", "-o", "{out_csv}", "--models", "{missing}.csv"], 2,
         "--models '{missing}.csv': no such file", "{out_csv}"),
    _cli("collect-half-written-file", ["collect", "{half_written}", "-o", "{out_csv}"], 1, "_acc.csv", "{out_csv}"),
    _cli("collect-nothing-to-read", ["collect", "{empty}", "-o", "{out_csv}"], 1, "{empty}", "{out_csv}"),
    _cli("collect-bad-mapping", ["collect", "{outputs}", "-o", "{out_csv}", "--models", "{bad_mapping}"], 1,
         "{bad_mapping}", "{out_csv}"),
    # ---- leaderboard
    _cli("leaderboard-missing-records", ["leaderboard", "{missing}.csv", "-o", "{board}"], 2,
         "RESULTS_CSV '{missing}.csv': no such file", "{board}"),
    _cli("leaderboard-wrong-column", ["leaderboard", "{wrong_column}", "-o", "{board}"], 1,
         "{wrong_column}: missing column(s) metric", "{board}"),
    _cli("leaderboard-not-records", ["leaderboard", "{file}", "-o", "{board}"], 1, "is not a records CSV", "{board}"),
    _cli("leaderboard-output-is-a-file", ["leaderboard", "{records}", "-o", "{file}"], 2,
         "-o/--output '{file}': is a file"),
    _cli("leaderboard-unknown-format", ["leaderboard", "{records}", "-o", "{board}", "--formats", "md,pdf"], 2,
         "unknown format(s) ['pdf']", "{board}"),
    _cli("leaderboard-missing-samples", ["leaderboard", "{records}", "-o", "{board}", "--samples", "{missing}"], 2,
         "--samples '{missing}': no such file", "{board}"),
    # ---- demo
    _cli("demo-out-is-a-file", ["demo", "--out", "{file}"], 2, "--out '{file}': is a file"),
    _cli("demo-zero-steps", ["demo", "--finetune-steps", "0"], 2, "--finetune-steps: 0 must be > 0"),
    _cli("demo-components-without-parts", ["demo", "--components", "{empty}"], 2, "{empty}"),
    # ---- the VLMEvalKit runner
    _run_py("run-missing-model-path", ["--model", "tg_llava", "--model-path", "{missing}", "--data", "x",
                                       "--work-dir", "{out}"], 2, "--model-path '{missing}': no such folder", "{out}"),
    _run_py("run-model-path-not-a-checkpoint", ["--model", "tg_llava", "--model-path", "{empty}", "--data", "x",
                                                "--work-dir", "{out}"], 2, "has no config.json", "{out}"),
    _run_py("run-config-not-json", ["--config", "{file}", "--work-dir", "{out}"], 2,
            "--config '{file}': not a JSON file", "{out}"),
    _run_py("run-config-not-an-object", ["--config", "{json_list}", "--work-dir", "{out}"], 2,
            "--config '{json_list}': not a JSON object", "{out}"),
    _run_py("run-zero-batch-size", ["--model", "tg_llava", "--batch-size", "0", "--data", "x", "--work-dir", "{out}"],
            2, "--batch-size: batch_size must be a positive integer, got 0", "{out}"),
    _run_py("run-unknown-variant", ["--model", "tg_llava", "--variant", "qwen2", "--data", "x", "--work-dir", "{out}"],
            2, "unknown variant 'qwen2'", "{out}"),
    _run_py("run-missing-runner", ["--vlmevalkit-run", "{missing}", "--model", "tg_llava", "--data", "x",
                                   "--work-dir", "{out}"], 2, "--vlmevalkit-run='{missing}': no VLMEvalKit run.py",
            "{out}"),
    _run_py("run-checkpoint-of-another-variant", ["--model", "TG-LLaVA-Qwen2-7B", "--model-path", "{ckpt}", "--data",
                                                  "x", "--work-dir", "{out}"], 2,
            "is not a tg-llava-qwen2-7b checkpoint", "{out}"),
    _run_py("run-unknown-dataset-class", ["--config", "{unknown_dataset}", "--model-path", "{ckpt}", "--work-dir",
                                          "{out}"], 2, "has class 'ImageYesNoDataset', which VLMEvalKit does not have",
            "{out}"),
]


@pytest.fixture(scope="module")
def paths(tmp_path_factory, tiny_checkpoint) -> dict[str, str]:
    """The inputs the cases name: good ones to combine with the bad, and the bad ones."""
    from PIL import Image

    root = tmp_path_factory.mktemp("bad_inputs")
    (root / "empty").mkdir()
    (root / "busy").mkdir()
    (root / "busy" / "notes.txt").write_text("mine")
    (root / "a_file.txt").write_text("not a folder, not a CSV of records\n")
    (root / "config_only").mkdir()
    (root / "config_only" / "config.json").write_text("{}")
    Image.new("RGB", (8, 8), "red").save(root / "ok.png")
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    half = root / "half_written"
    shutil.copytree(OUTPUTS / "vlmevalkit_flat", half)
    score = next(half.glob("*/*_acc.csv"))
    score.write_text(score.read_text()[: len(score.read_text()) // 3].rsplit("\n", 1)[0] + "\n" + "Overall,0.")
    (root / "bad_mapping.csv").write_text("name,variant\nTG,tg-llava-vicuna-13b\n")  # no model column
    records = root / "records.csv"
    proc = subprocess.run([*CLI, "collect", str(OUTPUTS / "lmms_eval"), "-o", str(records), "--no-progress"],
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import pandas as pd

    pd.read_csv(records).drop(columns=["metric"]).to_csv(root / "wrong_column.csv", index=False)
    (root / "a_list.json").write_text("[]\n")
    (root / "unknown_dataset.json").write_text(json.dumps(
        {"model": {"tg_llava": {}}, "data": {"tg_tiny_yorn": {"class": "ImageYesNoDataset", "dataset": "tg_tiny_yorn"}}}
    ))
    return {
        "ckpt": str(tiny_checkpoint), "empty": str(root / "empty"), "busy": str(root / "busy"),
        "file": str(root / "a_file.txt"), "config_only": str(root / "config_only"), "png": str(root / "ok.png"),
        "corrupt": str(root / "corrupt.png"), "missing": str(root / "does_not_exist"), "outputs": str(OUTPUTS),
        "half_written": str(half), "bad_mapping": str(root / "bad_mapping.csv"), "records": str(records),
        "wrong_column": str(root / "wrong_column.csv"), "json_list": str(root / "a_list.json"), "unknown_dataset": str(root / "unknown_dataset.json"),
        "long": " ".join(["colour"] * TOO_LONG_WORDS), "out": str(root / "out"), "out_csv": str(root / "out.csv"),
        "board": str(root / "board"),
    }


def test_there_are_at_least_forty_cases():
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, paths, tmp_path):
    argv = [a.format(**paths) for a in case.argv]
    env_cwd = tmp_path  # relative defaults (demo_out, outputs/) land here, not in the checkout
    proc = subprocess.run([*case.program, *argv], capture_output=True, text=True, cwd=env_cwd, timeout=TIMEOUT_S)
    output = proc.stdout + proc.stderr
    assert proc.returncode == case.status, f"exit {proc.returncode}, expected {case.status}:\n{output[-3000:]}"
    assert case.message.format(**paths) in output, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    if case.absent is not None:
        leftover = Path(case.absent.format(**paths))
        assert not leftover.exists(), f"{leftover} was written"
        assert not list(leftover.parent.glob(f".{leftover.name}.tmp-*")), "a temporary was left behind"
    assert not (tmp_path / "demo_out").exists() and not (tmp_path / "outputs").exists()
