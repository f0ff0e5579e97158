"""Regenerate ``tests/data/toolkit_outputs/``: real VLMEvalKit and lmms-eval output trees.

The parsers of :mod:`tg_llava_eval.results` are tested on files written by the real toolkits, not
on hand-made imitations. This script produces them, offline, on a CPU, in about a minute:

1. It writes six tiny local datasets (solid-colour 8x8 PNGs; a few rows each) covering the score
   families the parsers support: vanilla multiple choice with two splits and categories
   (``tinymcq``), circular MMBench-style multiple choice (``tiny_MMBench``), default yes/no
   (``tinyyorn``), POPE-style yes/no (``tinyPOPE``), MME-style paired yes/no over the 14 MME
   categories (``tiny_MME``) and open VQA with ten reference answers (``tinyvqa``). Dataset names
   deliberately contain VLMEvalKit's trigger substrings (``MMBench``, ``POPE``, ``MME``) so that
   VLMEvalKit picks its circular evaluation and its POPE/MME rating functions.
2. It runs the installed **ms-vlmeval** (``vlmeval.run.main``, the flat ``work_dir/<model>/`` layout)
   with two deterministic dummy models registered in place in ``vlmeval.config.supported_VLM``.
3. It runs the installed **lmms-eval** CLI (``lmms_eval.__main__.cli_evaluate``) on the same rows as
   local ``generate_until`` tasks, with a dummy ``lmms`` subclass registered in-process in
   ``MODEL_REGISTRY_V2`` (no entry point), twice: once per dummy model.
4. It copies the trees (minus logs and lock files) into the output folder and *derives* from the flat
   VLMEvalKit tree the two other layouts the parsers must read: upstream's per-run
   ``T<YYYYMMDD-HHMMSS>/`` folders with relative symlinks (two runs, the older one with edited
   scores, to exercise "newest run wins"), and the legacy ``T<YYYYMMDD>_G<commit>/`` folders with
   absolute symlinks (dangling, as after copying a work dir to another machine).

The dummy models ("colour oracles") read the colour of the first image and answer from it:
``TG-LLaVA-Vicuna-13B`` sees colours correctly, ``LLaVA-1.5-Vicuna-13B-TG`` confuses green with
blue. They only carry our preset names so that the fixture exercises model-identity resolution;
they are not TG-LLaVA. Some ground-truth answers are deliberately "wrong" (see ``MISLABELED``) so
that scores are neither 0 nor 100. The expected scores are derived by hand in
``tests/unit/results/test_toolkit_outputs.py``.

Usage::

    HF_HUB_OFFLINE=1 .venv/bin/python tools/regen_toolkit_outputs.py [--out tests/data/toolkit_outputs]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import textwrap
from functools import partial
from pathlib import Path

import pandas as pd
from PIL import Image

logger = logging.getLogger("regen_toolkit_outputs")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "tests" / "data" / "toolkit_outputs"

#: The palette of the fixture images (RGB) and its colour names.
PALETTE = {
    "red": (220, 30, 30),
    "green": (30, 180, 30),
    "blue": (30, 30, 220),
    "yellow": (230, 220, 30),
}
COLOURS = list(PALETTE)
#: Side of the square fixture images in pixels (tiny on purpose: the test data stays small).
IMAGE_SIDE = 8

#: The two dummy models: preset name -> colour confusions of that oracle.
MODELS = {
    "TG-LLaVA-Vicuna-13B": {},
    "LLaVA-1.5-Vicuna-13B-TG": {"green": "blue"},
}
#: lmms-eval runs: the dummy model's ``--model_args`` per oracle; the baseline run gets a
#: ``tg_llava_run.json`` manifest instead of a ``variant=`` argument.
LMMS_RUNS = {
    "TG-LLaVA-Vicuna-13B": "pretrained=ckpts/tg-llava-vicuna-13b,variant=tg-llava-vicuna-13b",
    "LLaVA-1.5-Vicuna-13B-TG": "pretrained=ckpts/llava-1.5-vicuna-13b",
}
#: Row indices per dataset whose stored answer disagrees with the image (everyone gets them wrong).
MISLABELED = {
    "tinymcq": {3, 7},
    "tiny_MMBench": {3},
    "tinyyorn": {5},
    "tinyPOPE": {6},
    "tiny_MME": {4},
    "tinyvqa": {7},
}
#: The 14 MME categories (VLMEvalKit's ``MME_rating`` and lmms-eval's ``mme`` need their names).
MME_CATEGORIES = [
    "existence", "count", "position", "color", "OCR", "posters", "celebrity", "scene",
    "landmark", "artwork", "commonsense_reasoning", "numerical_calculation",
    "text_translation", "code_reasoning",
]
#: Hand-written files of the output folder that regeneration keeps.
HAND_WRITTEN = ("README.md", "benchmarks.json")
#: Fixed timestamps of the derived upstream/legacy runs (the real run's time is in status.json).
UPSTREAM_RUNS = ("T20260110-093000", "T20260112-174500")
LEGACY_RUN = "T20251215_G1a2b3c4d"


# --------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------


def colour_png(colour: str) -> bytes:
    """Encode an ``IMAGE_SIDE``-pixel square PNG filled with ``colour``."""
    buffer = io.BytesIO()
    Image.new("RGB", (IMAGE_SIDE, IMAGE_SIDE), PALETTE[colour]).save(buffer, format="PNG")
    return buffer.getvalue()


def _wrong(colour: str) -> str:
    """A colour other than ``colour`` (the next one in the palette)."""
    return COLOURS[(COLOURS.index(colour) + 1) % len(COLOURS)]


def _letter_rows(name: str, colours: list[str], extra: list[dict]) -> list[dict]:
    """Multiple-choice rows: options are the palette rotated per row; answer = the image colour.

    The rotation ``2 i + 1`` puts the right option at D, C, B, A for the four colours, so a model
    that always answers the same letter does not score like the oracle.
    """
    rows = []
    for i, (colour, more) in enumerate(zip(colours, extra)):
        shift = (2 * i + 1) % len(COLOURS)
        options = COLOURS[shift:] + COLOURS[:shift]
        truth = _wrong(colour) if i in MISLABELED[name] else colour
        row = {"index": i, "colour": colour, "question": "What is the main colour of the image?"}
        row.update({letter: option for letter, option in zip("ABCD", options)})
        row["answer"] = "ABCD"[options.index(truth)]
        row.update(more)
        rows.append(row)
    return rows


def build_datasets() -> dict[str, list[dict]]:
    """All fixture datasets as lists of rows (``colour`` = the image; VLMEvalKit/lmms columns)."""
    data: dict[str, list[dict]] = {}
    mcq_colours = ["red", "green", "blue", "yellow"] * 2
    data["tinymcq"] = _letter_rows(
        "tinymcq",
        mcq_colours,
        [
            {
                "split": "dev" if i < 4 else "test",
                "category": "attribute" if i % 2 == 0 else "scene",
                "l2-category": "coarse_perception",
            }
            for i in range(8)
        ],
    )
    mmb = _letter_rows(
        "tiny_MMBench",
        ["red", "green", "blue", "yellow"],
        [{"split": "dev", "category": "colour", "l2-category": "finegrained_perception (instance-level)"}] * 4,
    )
    # Circular copies of the first two questions (index + 1e6, options rotated by one).
    for base in mmb[:2]:
        copy = dict(base)
        copy["index"] = base["index"] + 1_000_000
        options = [base[letter] for letter in "ABCD"]
        rotated = options[1:] + options[:1]
        copy.update({letter: option for letter, option in zip("ABCD", rotated)})
        copy["answer"] = "ABCD"[rotated.index(options["ABCD".index(base["answer"])])]
        mmb.append(copy)
    data["tiny_MMBench"] = mmb

    def yes_no_rows(name: str, categories: list[str]) -> list[dict]:
        rows = []
        for i, category in enumerate(categories):
            colour = COLOURS[i % len(COLOURS)]
            asked = colour if i % 2 == 0 else _wrong(colour)
            truth = "Yes" if asked == colour else "No"
            if i in MISLABELED[name]:
                truth = "No" if truth == "Yes" else "Yes"
            rows.append(
                {
                    "index": i,
                    "colour": colour,
                    "question": f"Is the main colour of the image {asked}? Please answer yes or no.",
                    "answer": truth,
                    "category": category,
                }
            )
        return rows

    data["tinyyorn"] = yes_no_rows("tinyyorn", ["colour"] * 4 + ["hue"] * 4)
    data["tinyPOPE"] = yes_no_rows(
        "tinyPOPE", ["adversarial", "popular", "random", "adversarial", "popular", "random", "random", "popular"]
    )
    mme = []
    for k, category in enumerate(MME_CATEGORIES):
        colour = COLOURS[k % len(COLOURS)]
        for j, asked in enumerate((colour, _wrong(colour))):
            i = 2 * k + j
            truth = "Yes" if j == 0 else "No"
            if i in MISLABELED["tiny_MME"]:
                truth = "No" if truth == "Yes" else "Yes"
            mme.append(
                {
                    "index": i,
                    "colour": colour,
                    "image_path": f"mme_{k:02d}.png",
                    "question": f"Is the main colour of the image {asked}? Please answer yes or no.",
                    "answer": truth,
                    "category": category,
                }
            )
    data["tiny_MME"] = mme
    vqa = []
    for i in range(8):
        colour = COLOURS[i % len(COLOURS)]
        truth = _wrong(colour) if i in MISLABELED["tinyvqa"] else colour
        vqa.append(
            {
                "index": i,
                "colour": colour,
                "question": "What is the main colour of the image?",
                # Ten identical references: VLMEvalKit's VQA score is min(1, matches / 3).
                "answer": str([truth] * 10),
                "category": "primary" if colour in ("red", "blue") else "secondary",
            }
        )
    data["tinyvqa"] = vqa
    return data


#: VLMEvalKit dataset class per fixture dataset (``--config`` JSON ``class``).
VLMEVAL_CLASSES = {
    "tinymcq": "CustomMCQDataset",
    "tiny_MMBench": "CustomMCQDataset",
    "tinyyorn": "ImageYORNDataset",
    "tinyPOPE": "ImageYORNDataset",
    "tiny_MME": "ImageYORNDataset",
    "tinyvqa": "ImageVQADataset",
}


def write_lmudata(root: Path, data: dict[str, list[dict]]) -> None:
    """Write one VLMEvalKit TSV per dataset (base64 images) into ``root`` (the ``LMUData`` dir)."""
    root.mkdir(parents=True, exist_ok=True)
    for name, rows in data.items():
        frame = pd.DataFrame(rows)
        frame["image"] = [base64.b64encode(colour_png(c)).decode("ascii") for c in frame.pop("colour")]
        frame.to_csv(root / f"{name}.tsv", sep="\t", index=False)


# --------------------------------------------------------------------------------------------
# The dummy "colour oracle" shared by both toolkits
# --------------------------------------------------------------------------------------------

_OPTION_LINE = re.compile(r"^([A-Z])\. (.+?)\s*$", re.MULTILINE)


def oracle_answer(image: Image.Image, text: str, confusions: dict[str, str]) -> str:
    """Answer ``text`` about ``image`` from the image's colour (deterministic dummy model).

    Multiple choice (option lines ``X. text``): the letter of the option naming the colour;
    yes/no questions: whether the asked colour is the seen one; anything else: the colour name.
    """
    pixel = image.convert("RGB").getpixel((0, 0))
    seen = min(PALETTE, key=lambda name: sum((a - b) ** 2 for a, b in zip(PALETTE[name], pixel)))
    seen = confusions.get(seen, seen)
    options = dict((text_.strip(), letter) for letter, text_ in _OPTION_LINE.findall(text))
    if options:
        return options.get(seen, "I do not know.")
    if "yes or no" in text.lower():
        asked = next((c for c in COLOURS if re.search(rf"\b{c}\b", text)), None)
        return "Yes" if asked == seen else "No"
    return seen


# --------------------------------------------------------------------------------------------
# VLMEvalKit
# --------------------------------------------------------------------------------------------


def run_vlmevalkit(lmudata: Path, work_dir: Path) -> None:
    """Run ms-vlmeval's ``run.main`` on every fixture dataset with both dummy models."""
    os.environ["LMUData"] = str(lmudata)
    os.environ.pop("MMEVAL_ROOT", None)
    os.environ.pop("OPENAI_API_KEY", None)
    import vlmeval.config
    import vlmeval.run
    from vlmeval.vlm.base import BaseModel

    class ColourOracle(BaseModel):
        """VLMEvalKit dummy: answers from the first image's colour (see ``oracle_answer``)."""

        INTERLEAVE = False

        def __init__(self, confusions: dict[str, str] | None = None, **kwargs):
            super().__init__()
            self.confusions = dict(confusions or {})

        def generate_inner(self, message, dataset=None):
            image = next(item["value"] for item in message if item["type"] == "image")
            text = "\n".join(item["value"] for item in message if item["type"] == "text")
            with Image.open(image) as img:
                return oracle_answer(img, text, self.confusions)

    for name, confusions in MODELS.items():
        vlmeval.config.supported_VLM[name] = partial(ColourOracle, confusions=confusions)
    config = {
        "model": {name: {} for name in MODELS},
        "data": {name: {"class": cls, "dataset": name} for name, cls in VLMEVAL_CLASSES.items()},
    }
    config_path = work_dir.parent / "vlmeval_config.json"
    config_path.write_text(json.dumps(config, indent=2))
    argv_backup = sys.argv
    sys.argv = [
        "run.py", "--config", str(config_path), "--work-dir", str(work_dir),
        "--judge", "exact_matching", "--mode", "all",
    ]
    try:
        vlmeval.run.main()
    finally:
        sys.argv = argv_backup
    for name in MODELS:
        status = json.loads((work_dir / name / "status.json").read_text())
        for dataset in VLMEVAL_CLASSES:
            entry = status["datasets"].get(dataset, {})
            if entry.get("status") != "done" or not entry.get("metrics"):
                raise RuntimeError(f"VLMEvalKit did not score {name} x {dataset}: {entry}")


# --------------------------------------------------------------------------------------------
# lmms-eval
# --------------------------------------------------------------------------------------------

LMMS_UTILS = '''\
"""doc_to_* hooks of the fixture tasks (written by tools/regen_toolkit_outputs.py)."""
import os

from PIL import Image

from lmms_eval.tasks.mme.utils import mme_aggregate_results, mme_process_results  # noqa: F401
from lmms_eval.tasks.pope.utils import (  # noqa: F401
    pope_aggregate_accuracy, pope_aggregate_f1_score, pope_aggregate_precision,
    pope_aggregate_recall, pope_aggregate_yes_ratio, pope_process_results,
)

HERE = os.path.dirname(os.path.abspath(__file__))


def doc_to_visual(doc):
    return [Image.open(os.path.join(HERE, doc["image_file"])).convert("RGB")]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    kwargs = lmms_eval_specific_kwargs or {}
    lines = [doc["question"]]
    for letter in "ABCD":
        if doc.get(letter):
            lines.append(f"{letter}. {doc[letter]}")
    return kwargs.get("pre_prompt", "") + "\\n".join(lines) + kwargs.get("post_prompt", "")


def accuracy_results(doc, results):
    return {"accuracy": float(results[0].strip() == doc["answer"])}


def vqa_results(doc, results):
    return {"exact_match": float(results[0].strip().lower() == doc["answer"].lower())}
'''

#: Per fixture task: (process_results hook, metric_list YAML, post_prompt).
_ACCURACY = ("accuracy_results", "  - metric: accuracy\n    aggregation: mean\n    higher_is_better: true\n")
LMMS_TASKS = {
    "tinymcq": _ACCURACY + ("\\nAnswer with the option's letter from the given choices directly.",),
    "tinyyorn": _ACCURACY + ("",),
    "tinyvqa": (
        "vqa_results",
        "  - metric: exact_match\n    aggregation: mean\n    higher_is_better: true\n",
        "\\nAnswer the question using a single word or phrase.",
    ),
    "tinyPOPE": (
        "pope_process_results",
        "".join(
            f"  - metric: pope_{m}\n    aggregation: !function utils.pope_aggregate_{m}\n    higher_is_better: true\n"
            for m in ("accuracy", "precision", "recall", "f1_score", "yes_ratio")
        ),
        "",
    ),
    "tiny_MME": (
        "mme_process_results",
        "".join(
            f"  - metric: mme_{m}_score\n    aggregation: !function utils.mme_aggregate_results\n"
            "    higher_is_better: true\n"
            for m in ("perception", "cognition")
        ),
        "",
    ),
}


def write_lmms_tasks(root: Path, data: dict[str, list[dict]]) -> None:
    """Write the local lmms-eval tasks (JSONL + PNGs + YAML + utils.py) under ``root``."""
    folder = root / "tiny_colour"
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "utils.py").write_text(LMMS_UTILS)
    for name, (hook, metrics, post_prompt) in LMMS_TASKS.items():
        lines = []
        for row in data[name]:
            doc = {k: v for k, v in row.items() if k != "colour"}
            image_name = doc.pop("image_path", None) or f"{name}_{row['index']}.png"
            (folder / "data" / image_name).write_bytes(colour_png(row["colour"]))
            doc["image_file"] = f"data/{image_name}"
            doc["question_id"] = image_name  # MME pairs the two questions of one image
            if name == "tinyvqa":
                doc["answer"] = first_reference(doc["answer"])
            elif name in ("tinyPOPE", "tiny_MME"):
                doc["answer"] = doc["answer"].lower()
            lines.append(json.dumps(doc))
        (folder / "data" / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
        (folder / f"{name}.yaml").write_text(
            textwrap.dedent(
                f"""\
                task: {name}
                tag: tiny_colour
                dataset_path: json
                dataset_kwargs:
                  data_files:
                    test: data/{name}.jsonl
                test_split: test
                output_type: generate_until
                doc_to_visual: !function utils.doc_to_visual
                doc_to_text: !function utils.doc_to_text
                doc_to_target: answer
                generation_kwargs:
                  max_new_tokens: 8
                  temperature: 0
                  do_sample: false
                process_results: !function utils.{hook}
                lmms_eval_specific_kwargs:
                  default:
                    pre_prompt: ""
                    post_prompt: "{post_prompt}"
                metadata:
                  version: 0.0
                metric_list:
                """
            )
            + metrics
        )


def first_reference(answer: str) -> str:
    """First reference of a VLMEvalKit list-literal answer (``"['red', 'red', ...]"``)."""
    return answer.strip("[]").split(",")[0].strip().strip("'")


def run_lmms_eval(tasks_dir: Path, output_path: Path) -> None:
    """Run the lmms-eval CLI once per dummy model on the ``tiny_colour`` tag."""
    from lmms_eval.api.model import lmms
    from lmms_eval.models import MODEL_REGISTRY_V2
    from lmms_eval.models.registry_v2 import ModelManifest

    class ColourOracleLmms(lmms):
        """lmms-eval dummy: answers from the image colour (see ``oracle_answer``)."""

        is_simple = True

        def __init__(self, pretrained: str = "", variant: str = "", **kwargs):
            super().__init__()
            self.confusions = dict(MODELS[PRETRAINED_TO_MODEL[pretrained]])

        def generate_until(self, requests):
            answers = []
            for request in requests:
                context, _, doc_to_visual, doc_id, task, split = request.args
                image = doc_to_visual(self.task_dict[task][split][doc_id])[0]
                answers.append(oracle_answer(image, context, self.confusions))
            return answers

        def loglikelihood(self, requests):
            raise NotImplementedError("the fixture tasks are generation tasks")

        def generate_until_multi_round(self, requests):
            raise NotImplementedError("the fixture tasks are single-round")

    # Importable class path for the registry: this module, wherever it runs from.
    module = sys.modules[__name__]
    module.ColourOracleLmms = ColourOracleLmms
    MODEL_REGISTRY_V2.register_manifest(
        ModelManifest(model_id="tg_llava", simple_class_path=f"{__name__}.ColourOracleLmms"),
        overwrite=True,
    )
    from lmms_eval.__main__ import cli_evaluate

    for model_args in LMMS_RUNS.values():
        argv_backup = sys.argv
        sys.argv = [
            "lmms-eval", "--model", "tg_llava", "--model_args", model_args,
            "--tasks", "tiny_colour", "--include_path", str(tasks_dir), "--batch_size", "1",
            "--device", "cpu", "--output_path", str(output_path), "--log_samples",
            "--verbosity", "DEBUG", "--timezone", "UTC",
        ]
        try:
            cli_evaluate()
        finally:
            sys.argv = argv_backup


PRETRAINED_TO_MODEL = {
    args.split(",")[0].split("=", 1)[1]: model for model, args in LMMS_RUNS.items()
}


# --------------------------------------------------------------------------------------------
# Copy and derive the committed trees
# --------------------------------------------------------------------------------------------

#: Files that are not copied into the test data (run logs, lock files, temporary files).
_SKIP = re.compile(r"(\.lock|\.log|\.tmp)$")


def copy_tree(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` without logs, locks and empty folders."""
    for path in sorted(src.rglob("*")):
        if path.is_file() and not _SKIP.search(path.name) and "logs" not in path.relative_to(src).parts:
            target = dst / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


def _score_files(model_dir: Path) -> list[Path]:
    return sorted(p for p in model_dir.iterdir() if p.is_file())


def derive_upstream(flat: Path, dst: Path) -> None:
    """Upstream HEAD layout: ``<model>/T<YYYYMMDD-HHMMSS>/`` per run + relative symlinks to the latest.

    The older run is a copy whose MCQ accuracies are halved, so a parser that does not prefer the
    newest run reads different numbers.
    """
    for model_dir in sorted(p for p in flat.iterdir() if p.is_dir()):
        old, new = (dst / model_dir.name / run for run in UPSTREAM_RUNS)
        for run_dir in (old, new):
            run_dir.mkdir(parents=True, exist_ok=True)
            for file in _score_files(model_dir):
                shutil.copy2(file, run_dir / file.name)
            status = json.loads((run_dir / "status.json").read_text())
            status["eval_id"] = run_dir.name
            status["created_at"] = _eval_id_to_iso(run_dir.name)
            (run_dir / "status.json").write_text(json.dumps(status, indent=2))
        acc = old / f"{model_dir.name}_tinymcq_acc.csv"
        frame = pd.read_csv(acc)
        numeric = frame.columns.drop("split")
        frame[numeric] = frame[numeric] / 2
        frame.to_csv(acc, index=False, quoting=1)
        for file in _score_files(new):
            if file.name.startswith(f"{model_dir.name}_") or file.name == "status.json":
                (dst / model_dir.name / file.name).symlink_to(Path(new.name) / file.name)


def derive_legacy(flat: Path, dst: Path) -> None:
    """Older upstream / nvidia layout: ``<model>/T<YYYYMMDD>_G<commit8>/`` + absolute symlinks.

    No ``status.json`` (nv never wrote one). The symlinks point to the absolute path of the machine
    the run happened on, which does not exist here: they dangle, as in a copied work dir.
    """
    for model_dir in sorted(p for p in flat.iterdir() if p.is_dir()):
        run_dir = dst / model_dir.name / LEGACY_RUN
        run_dir.mkdir(parents=True, exist_ok=True)
        for file in _score_files(model_dir):
            if file.name == "status.json":
                continue
            shutil.copy2(file, run_dir / file.name)
            link = dst / model_dir.name / file.name
            link.symlink_to(Path("/nonexistent/cluster/outputs") / model_dir.name / LEGACY_RUN / file.name)


def _eval_id_to_iso(eval_id: str) -> str:
    stamp = eval_id[1:]
    return f"{stamp[0:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}+00:00"


def write_lmms_manifest(lmms_out: Path) -> None:
    """A ``tg_llava_run.json`` next to the baseline's lmms-eval results, as our lmms-eval wrapper writes it."""
    folder = lmms_out / "ckpts__llava-1.5-vicuna-13b"
    manifest = {
        "schema": "tg_llava_run/1",
        "toolkit": "lmms-eval",
        "toolkit_version": "0.7.3",
        "model_name": "tg_llava",
        "variant": "llava-1.5-vicuna-13b",
        "llm": "llama",  # the lmms-eval wrapper records the LLM's model_type
        "checkpoint": "ckpts/llava-1.5-vicuna-13b",
        "tg_llava_eval_version": "0.1.0",
        "created": "2026-01-12T18:00:00+00:00",
        "extra": {"note": "fixture: written by tools/regen_toolkit_outputs.py for a dummy model"},
    }
    (folder / "tg_llava_run.json").write_text(json.dumps(manifest, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Regenerate the fixture trees; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (replaced)")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temporary work folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

    out: Path = args.out.resolve()
    tmp = Path(tempfile.mkdtemp(prefix="regen_toolkit_outputs_"))
    # Both toolkits record the git commit of the working directory: run them outside this repo.
    os.chdir(tmp)
    os.environ["HF_HOME"] = str(tmp / "hf_home")
    os.environ["HF_DATASETS_CACHE"] = str(tmp / "hf_home" / "datasets")
    data = build_datasets()
    write_lmudata(tmp / "LMUData", data)
    write_lmms_tasks(tmp / "lmms_tasks", data)
    run_vlmevalkit(tmp / "LMUData", tmp / "vlmeval_work")
    run_lmms_eval(tmp / "lmms_tasks", tmp / "lmms_out")

    kept = {name: (out / name).read_bytes() for name in HAND_WRITTEN if (out / name).exists()}
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name, content in kept.items():
        (out / name).write_bytes(content)
    copy_tree(tmp / "vlmeval_work", out / "vlmevalkit_flat")
    copy_tree(tmp / "lmms_out", out / "lmms_eval")
    write_lmms_manifest(out / "lmms_eval")
    derive_upstream(out / "vlmevalkit_flat", out / "vlmevalkit_upstream")
    derive_legacy(out / "vlmevalkit_flat", out / "vlmevalkit_legacy")
    if args.keep_tmp:
        logger.info("temporary files kept in %s", tmp)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file() and not p.is_symlink())
    logger.info("wrote %s (%.1f KiB)", out, size / 1024)
    return 0


if __name__ == "__main__":
    sys.exit(main())
