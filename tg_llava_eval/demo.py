"""``make demo``: the whole chain on the embedded default, on a CPU, with nothing downloaded.

Phases (each writes a marker under ``<out>/.phases/``; a second run reuses a finished phase whose
settings did not change, unless ``fresh=True``):

1. **data** — the deterministic synthetic benchmark of :mod:`tg_llava_eval.training.synthetic`
   (coloured shapes in a 2×2 grid; training captions and instructions; held-out MCQ, yes/no and
   short-answer sets in both toolkits' local formats);
2. **train** — ``tiny`` (TG-LLaVA) and ``tiny-baseline`` (LLaVA-1.5, same sizes), each assembled
   by ``tg-llava-eval create`` from the pretrained tiny CLIP and LLM in :data:`COMPONENTS_DIR` (as the
   paper starts from CLIP and a pretrained LLM), through both stages with the real
   ``tg-llava-eval train`` CLI (:func:`tg_llava_eval.training.trainer.run_stage`), the two models
   side by side, one single-threaded process each;
3. **ablate** — inference-time switches of the trained TG model: TG-FOM off and TG-DP off (the
   trained LLaVA-1.5 model is the "both off" row, trained as such);
4. **vlmevalkit** — every model through the real VLMEvalKit (``run.py --config``);
5. **lmms-eval** — the TG model and the baseline through the real lmms-eval CLI
   (``--model tg_llava``), generation and log-likelihood tasks, side by side;
6. **report** — ``tg-llava-eval collect`` (with a model mapping, ``report/models.csv``, that names
   the lmms-eval rows, which lmms-eval names by checkpoint path, like the VLMEvalKit rows) +
   ``tg-llava-eval leaderboard`` (md, csv, xlsx, html + charts), an ablation report and the
   accuracy-vs-chance table.

Everything is seeded: two runs give the same numbers.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

logger = logging.getLogger(__name__)

#: Where run.py lives (the repository root of an editable install).
REPO_ROOT = Path(__file__).resolve().parents[1]

#: Version of what the phases store; bumped when a stored result changes shape (2: the data card
#: has ``question_prior``; 3: the report keeps the held-out counts), so that phases finished by an
#: older version are redone, not misread.
PHASE_FORMAT = 3
#: Version of the report phase alone (collect + leaderboard); bumped when the report changes
#: without its inputs changing (2: lmms-eval rows named through ``report/models.csv``), so that
#: only the report is redone, not the training before it.
REPORT_FORMAT = 2
#: Significance level of the one-sided binomial test that calls an accuracy "above chance".
ABOVE_CHANCE_ALPHA = 0.05
#: The pretrained tiny CLIP (``clip/``) and LLM (``llm/``) the trained models are assembled from,
#: made once by ``tools/pretrain_tiny_components.py`` (its command and curves in ``pretraining.json``).
COMPONENTS_DIR = Path(__file__).resolve().parent / "demo_components"
#: Trained models: name in tables -> preset.
TRAINED = {"TG-LLaVA-tiny": "tiny", "LLaVA-1.5-tiny": "tiny-baseline"}
#: Inference-time ablations of the trained TG model: name -> (preset, TG-FOM on, TG-DP on).
INFERENCE_ABLATIONS = {
    "TG-LLaVA-tiny-noFOM-inference": ("tiny-no-fom", False, True),
    "TG-LLaVA-tiny-noDP-inference": ("tiny-no-dp", True, False),
}


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """Sizes and schedules of the demo (the defaults fit ≤ 10 minutes on 2 CPU cores).

    Attributes:
        seed: Seed of the data and of training.
        n_stage1, n_stage2: Training rows of stage 1 (captions) and stage 2 (instructions).
        n_test: Held-out questions per kind (MCQ, yes/no, short answer).
        image_size: Side of the synthetic images (the tiny vision tower's input size).
        pretrain_steps, finetune_steps: Optimiser steps per stage.
        batch_size: Per-device batch.
        gradient_accumulation_steps: Micro-batches per optimiser step in both stages; ``None``
            keeps each stage recipe's own value.
        pretrain_lr, finetune_lr: Learning rates (the paper's 1e-3 / 2e-5; the tiny LLM, 2 layers
            of 64, needs a larger stage-2 rate to learn reading images within the budget).
        lmms_batch_size: lmms-eval ``--batch_size``.
        components: Folder with the pretrained ``clip/`` and ``llm/`` both models are assembled from
            (as LLaVA starts from a pretrained CLIP and LLM); ``None`` starts from random weights.
    """

    seed: int = 0
    n_stage1: int = 3200
    n_stage2: int = 9600
    n_test: int = 60
    image_size: int = 56
    pretrain_steps: int = 200
    finetune_steps: int = 300
    batch_size: int = 16
    gradient_accumulation_steps: Optional[int] = None
    pretrain_lr: float = 1e-3
    finetune_lr: float = 1e-3
    lmms_batch_size: int = 8
    components: Optional[str] = str(COMPONENTS_DIR)

    @classmethod
    def quick(cls) -> "DemoSettings":
        """A shortened run for the test suite (every artefact, few steps)."""
        return cls(n_stage1=24, n_stage2=48, n_test=4, pretrain_steps=2, finetune_steps=3, batch_size=4)


@dataclasses.dataclass
class DemoResult:
    """Paths and figures of a finished demo."""

    out: Path
    phase_seconds: dict[str, float]
    reused: list[str]
    results_csv: Path
    leaderboard_dir: Path
    ablation_report: Path
    accuracy_table: list[dict[str, Any]]
    summary_path: Path


@functools.cache
def _preset_configs() -> str:
    """The trained presets' configs (sizes, template) as JSON, built once per process."""
    from .variants import get_variant

    presets = {name: get_variant(name).config().to_dict() for name in sorted(TRAINED.values())}
    return json.dumps(presets, sort_keys=True, default=str)


@functools.cache
def _components_digest(components: Optional[str]) -> Optional[str]:
    """SHA-256 over the files of the pretrained parts (names and bytes), once per process."""
    if components is None:
        return None
    digest = hashlib.sha256()
    for path in sorted(Path(components).rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(components)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _code_versions() -> dict[str, Any]:
    """What besides the settings decides every phase: the stored format and the data generator's
    version, so that a demo folder made by an older version of the package is redone, not reused."""
    from .training.synthetic import GENERATOR_VERSION

    return {"phase_format": PHASE_FORMAT, "generator_version": GENERATOR_VERSION}


def _model_inputs(settings: DemoSettings) -> dict[str, Any]:
    """What the trained models depend on besides the settings and the data: the trained presets'
    configs and the pretrained parts' bytes (the data phase does not, so changing them redoes the
    training and what follows it, not the data)."""
    return {"presets": _preset_configs(), "components": _components_digest(settings.components)}


def _fingerprint(settings: DemoSettings, *fields: str, **inputs: Any) -> str:
    """Hash of the settings a phase depends on, of ``inputs`` and of :func:`_code_versions`."""
    values = {f: getattr(settings, f) for f in fields} | _code_versions() | inputs
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


class _Phases:
    """Runs phases, skipping those whose marker has the same fingerprint."""

    def __init__(self, out: Path, fresh: bool, progress: Callable[[str], None]):
        self.dir = out / ".phases"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.fresh = fresh
        self.seconds: dict[str, float] = {}
        self.reused: list[str] = []
        self.progress = progress

    def run(self, name: str, fingerprint: str, fn: Callable[[], Any], outputs: tuple[Path, ...] = ()) -> Any:
        """``fn()``'s result, or the stored one when the marker has ``fingerprint``.

        ``outputs`` are the folders the phase writes: a redone phase starts without them, so its
        results never mix with an older run's files (the trainer would reuse an older initial
        checkpoint, the toolkits' output folders would keep older result files).
        """
        marker = self.dir / f"{name}.json"
        if not self.fresh and marker.exists():
            saved = json.loads(marker.read_text())
            if saved.get("fingerprint") == fingerprint:
                self.reused.append(name)
                self.seconds[name] = 0.0
                self.progress(f"{name}: reused (finished earlier)")
                return saved.get("result")
        for folder in outputs:
            shutil.rmtree(folder, ignore_errors=True)
        start = time.perf_counter()
        result = fn()
        self.seconds[name] = time.perf_counter() - start
        marker.write_text(json.dumps({"fingerprint": fingerprint, "result": result, "seconds": self.seconds[name]},
                                     indent=2, default=str))
        self.progress(f"{name}: done in {self.seconds[name]:.0f} s")
        return result


def _run(cmd: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
    """Run a subprocess with its output in ``log_path``; raise with the log's tail on failure."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ, **(env or {}))
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=str(REPO_ROOT))
    if proc.returncode != 0:
        tail = log_path.read_text()[-3000:]
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed (exit {proc.returncode}); log {log_path}:\n{tail}")


def _side_by_side(job: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    """``[job(item) for item in items]`` with up to one job per CPU core at a time.

    Each job drives one single-threaded subprocess; tiny models are bound by per-operation
    overhead, so two such processes on two cores take about the time of one. The first failure
    is raised once every job has finished.
    """
    from concurrent.futures import ThreadPoolExecutor

    workers = max(1, min(len(items), os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(job, items))


def _stage_commands(settings: DemoSettings, data: dict, variant: str, model_dir: Path) -> list[tuple[str, list[str]]]:
    """``(name, command)`` of one demo model's CLI steps: ``tg-llava-eval create`` assembling the
    start from the pretrained parts (when ``settings.components`` is set), then the two
    ``tg-llava-eval train`` stages.

    Gradient checkpointing (the recipe's default, for memory) is switched off: the tiny models fit
    anywhere and recomputing the forward pass would double the CPU time.
    """
    common = ["--no-deepspeed", "--per_device_train_batch_size", str(settings.batch_size), "--seed", str(settings.seed),
              "--logging_steps", "10", "--save_strategy", "no", "--report_to", "none",
              "--dataloader_num_workers", "0", "--bf16", "false", "--gradient_checkpointing", "false"]
    if settings.gradient_accumulation_steps is not None:
        common += ["--gradient_accumulation_steps", str(settings.gradient_accumulation_steps)]
    cli = [sys.executable, "-m", "tg_llava_eval.cli"]
    initial, stage1, stage2 = model_dir / "initial", model_dir / "stage1", model_dir / "stage2"
    commands = []
    start: list[str] = []
    if settings.components is not None:
        components = Path(settings.components)
        commands.append(("create", cli + ["create", "--variant", variant, "--output", str(initial), "--seed",
                                          str(settings.seed), "--vision", str(components / "clip"),
                                          "--llm", str(components / "llm")]))
        start = ["--model", str(initial)]
    commands.append(("stage1", cli + [
        "train", "pretrain", "--variant", variant, "--data", data["stage1_json"], "--images", data["image_dir"],
        "--output", str(stage1), *start, *common, "--max_steps", str(settings.pretrain_steps),
        "--learning_rate", str(settings.pretrain_lr)]))
    commands.append(("stage2", cli + [
        "train", "finetune", "--variant", variant, "--data", data["stage2_json"], "--images", data["image_dir"],
        "--output", str(stage2), "--from", str(stage1), *common, "--max_steps", str(settings.finetune_steps),
        "--learning_rate", str(settings.finetune_lr)]))
    return commands


def _train(settings: DemoSettings, data: dict, out: Path) -> dict:
    """Both stages of every :data:`TRAINED` model through the real ``tg-llava-eval train`` CLI.

    The models train side by side (:func:`_side_by_side`); each process is seeded, so the result
    does not depend on what runs beside it.
    """
    from .training.trainer import REPORT_NAME

    def train_one(variant: str) -> dict:
        model_dir = out / "models" / variant
        for step, cmd in _stage_commands(settings, data, variant, model_dir):
            _run(cmd, out / "logs" / f"train_{variant}_{step}.log", env={"OMP_NUM_THREADS": "1"})
        return json.loads((model_dir / "stage2" / REPORT_NAME).read_text())

    reports = dict(zip(TRAINED, _side_by_side(train_one, list(TRAINED.values()))))
    trained = {}
    for name, variant in TRAINED.items():
        report = reports[name]
        trained[name] = {"variant": variant, "checkpoint": str(out / "models" / variant / "stage2"),
                         "finetune_losses": [h["loss"] for h in report["log_history"] if "loss" in h],
                         "skipped_rows": report["data"]["skipped_total"]}
    return trained


def _ablate(trained: dict, out: Path) -> dict:
    from .create import switch_checkpoint

    source = trained["TG-LLaVA-tiny"]["checkpoint"]
    made = {}
    for name, (variant, fom, dp) in INFERENCE_ABLATIONS.items():
        target = out / "models" / "inference-ablations" / variant
        switch_checkpoint(source, target, variant=variant, use_text_guided_mask=fom, use_detail_perceiver=dp)
        made[name] = {"variant": variant, "checkpoint": str(target), "source": source, "kind": "inference-time switch"}
    return made


def _vlmevalkit(models: dict, data: dict, out: Path) -> str:
    config = {
        "model": {
            name: {"class": "TGLLaVA", "model_path": info["checkpoint"], "max_new_tokens": 8}
            for name, info in models.items()
        },
        "data": json.loads(Path(data["vlmeval_config"]).read_text())["data"],
    }
    config_path = out / "eval" / "vlmevalkit_config.json"
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(json.dumps(config, indent=2))
    work_dir = out / "eval" / "vlmevalkit"
    _run([sys.executable, str(REPO_ROOT / "run.py"), "--config", str(config_path), "--work-dir", str(work_dir),
          "--judge", "exact_matching"], out / "logs" / "vlmevalkit.log", env={"LMUData": data["lmudata_dir"]})
    return str(work_dir)


def _lmms_eval(models: dict, data: dict, out: Path, batch_size: int) -> str:
    """Every model through the real lmms-eval CLI, one process per model, side by side."""
    output = out / "eval" / "lmms_eval"
    tasks = ",".join(data["lmms_tasks"].values())

    def evaluate(name: str) -> None:
        info = models[name]
        _run([sys.executable, "-m", "lmms_eval", "--model", "tg_llava",
              "--model_args", f"pretrained={info['checkpoint']},variant={info['variant']}",
              "--tasks", tasks, "--include_path", data["lmms_include_path"], "--batch_size", str(batch_size),
              "--log_samples", "--output_path", str(output / name)],
             out / "logs" / f"lmms_eval_{name}.log", env={"OMP_NUM_THREADS": "1"})

    _side_by_side(evaluate, list(models))
    return str(output)


def benchmark_specs(card: dict) -> dict:
    """The ``--benchmarks`` JSON for ``collect``/``leaderboard``: one benchmark per question kind,
    joining the VLMEvalKit dataset and the lmms-eval task of that kind."""
    labels = {"mcq": "Synth-MCQ", "yorn": "Synth-YN", "vqa": "Synth-VQA"}
    benchmarks = []
    for kind, label in labels.items():
        datasets = [{"toolkit": "vlmevalkit", "name": card["vlmeval"]["datasets"][kind]["name"],
                     "headline": {"metric": "accuracy"}},
                    {"toolkit": "lmms-eval", "name": card["lmms_eval"]["tasks"][kind], "headline": {"metric": "accuracy"}}]
        benchmarks.append({"name": label, "datasets": datasets})
    benchmarks.append({"name": "Synth-MCQ-LL", "datasets": [
        {"toolkit": "lmms-eval", "name": card["lmms_eval"]["tasks"]["mcq_ll"], "headline": {"metric": "accuracy"}}]})
    return {"benchmarks": benchmarks}


def write_model_mapping(models: dict, path: Path) -> Path:
    """The ``collect --models`` CSV of the demo: each model's checkpoint path -> its variant and
    its name in the tables (``model,variant,name``).

    lmms-eval names a model by its ``pretrained=`` path; VLMEvalKit by the config's model name,
    which is already the demo's table name. Mapping the path to that name puts both toolkits'
    rows of one model under one name (see ``docs/results.md``, "Model mapping").

    Args:
        models: ``{table name: {"variant": ..., "checkpoint": ...}}`` (the train and ablate phases'
            results).
        path: The CSV to write.

    Returns:
        ``path``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["model", "variant", "name"])
        for name, info in sorted(models.items()):
            writer.writerow([info["checkpoint"], info["variant"], name])
    return path


def _report(models: dict, data: dict, eval_dirs: dict, out: Path) -> dict:
    from .cli import main as cli_main
    from .results import read_records_csv

    card = json.loads(Path(data["card_path"]).read_text())
    specs = out / "report" / "benchmarks.json"
    specs.parent.mkdir(parents=True, exist_ok=True)
    specs.write_text(json.dumps(benchmark_specs(card), indent=2))
    mapping = write_model_mapping(models, out / "report" / "models.csv")
    results_csv = out / "report" / "results.csv"
    if cli_main(["collect", eval_dirs["vlmevalkit"], eval_dirs["lmms_eval"], "-o", str(results_csv),
                 "--benchmarks", str(specs), "--models", str(mapping)]) != 0:
        raise RuntimeError("tg-llava-eval collect failed (see the log above)")
    board = out / "report" / "leaderboard"
    if cli_main(["leaderboard", str(results_csv), "-o", str(board), "--formats", "md,csv,xlsx,html,png",
                 "--benchmarks", str(specs), "--no-shipped-reference"]) != 0:
        raise RuntimeError("tg-llava-eval leaderboard failed (see the log above)")
    records = read_records_csv(results_csv)
    return {"results_csv": str(results_csv), "leaderboard": str(board),
            "records": [dataclasses.asdict(r) if dataclasses.is_dataclass(r) else dict(r) for r in records],
            "chance": card["chance_level"], "test_counts": card["counts"]["test"]}


def _accuracy_rows(report: dict) -> list[dict[str, Any]]:
    """Headline accuracy of each model per question kind and toolkit, with chance levels."""
    kinds = {"Synth-MCQ": "mcq", "Synth-YN": "yorn", "Synth-VQA": "vqa", "Synth-MCQ-LL": "mcq"}
    rows = []
    for record in report["records"]:
        if not record.get("primary") or record.get("benchmark") not in kinds:
            continue
        kind = kinds[record["benchmark"]]
        rows.append({"model": record["model"], "toolkit": record["toolkit"], "benchmark": record["benchmark"],
                     "accuracy": float(record["value"]), "chance_uniform": 100 * report["chance"][kind]["uniform"],
                     "chance_majority": 100 * report["chance"][kind]["majority"],
                     "chance_question_prior": 100 * report["chance"][kind]["question_prior"],
                     "n_items": report["test_counts"][kind]})
    return sorted(rows, key=lambda r: (r["toolkit"], r["benchmark"], r["model"]))


def _chance_bar(row: dict[str, Any]) -> float:
    """The accuracy a model must beat to show it reads the image: the highest chance level
    (uniform guess, most common answer, best answer per question category)."""
    return max(row["chance_uniform"], row["chance_majority"], row["chance_question_prior"])


def _chance_p_value(row: dict[str, Any]) -> float:
    """One-sided binomial p-value of ``row``'s accuracy against :func:`_chance_bar`: the chance that
    a guesser right with probability ``bar`` gets at least as many of the ``n_items`` right."""
    n, bar = row["n_items"], _chance_bar(row) / 100
    right = round(row["accuracy"] / 100 * n)
    return sum(math.comb(n, k) * bar**k * (1 - bar) ** (n - k) for k in range(right, n + 1))


def _chance_finding(rows: list[dict[str, Any]]) -> str:
    """Which (model, benchmark) accuracies are clearly above :func:`_chance_bar`; says so when none is.

    "Clearly" = a one-sided binomial test at :data:`ABOVE_CHANCE_ALPHA` over the held-out items: on
    60 items a few points above the bar is one or two lucky answers. Differences between models
    that all sit at chance measure answer priors, not the modules: the report has to say which case
    it is in.
    """
    bar_text = ("the highest of: a uniform guess, the most common answer, the best answer per question category; "
                f"one-sided binomial test, p < {ABOVE_CHANCE_ALPHA}")
    above, noise = [], []
    for r in rows:
        if r["accuracy"] <= _chance_bar(r):
            continue
        p_value = _chance_p_value(r)
        text = f"{r['model']} on {r['benchmark']} ({r['accuracy']:.1f} vs {_chance_bar(r):.1f}, p = {p_value:.2g})"
        (above if p_value < ABOVE_CHANCE_ALPHA else noise).append(text)
    lines = []
    if above:
        lines.append(f"- Clearly above chance ({bar_text}): " + "; ".join(above) + ".")
    else:
        lines.append(f"- No model is clearly above chance on any benchmark ({bar_text}): the models have not "
                     "learned to read the images, so the differences above are differences in answer priors, "
                     "not effects of TG-FOM or TG-DP.")
    if noise:
        lines.append("- Above the chance bar but within noise: " + "; ".join(noise) + ".")
    return "\n".join(lines)


def _ablation_markdown(rows: list[dict[str, Any]], *, pretrained_parts: bool = True) -> str:
    """The ablation report: each switch against the full model, labelled trained / inference-time
    (``pretrained_parts``: whether the models were assembled from the pretrained tiny CLIP and LLM)."""
    vlm = [r for r in rows if r["toolkit"] == "vlmevalkit"]
    benchmarks = sorted({r["benchmark"] for r in vlm})
    value = {(r["model"], r["benchmark"]): r["accuracy"] for r in vlm}
    order = [("TG-LLaVA-tiny", "full model (TG-FOM on, TG-DP on)", "trained"),
             ("TG-LLaVA-tiny-noFOM-inference", "TG-FOM off", "inference-time switch of the trained TG model"),
             ("TG-LLaVA-tiny-noDP-inference", "TG-DP off", "inference-time switch of the trained TG model"),
             ("LLaVA-1.5-tiny", "both off (LLaVA-1.5)", "trained as such, same data and steps")]
    lines = ["# Ablation report (tiny models, synthetic benchmark, VLMEvalKit)", "",
             "| model | switches | how | " + " | ".join(f"{b} | Δ" for b in benchmarks) + " |",
             "|---|---|---|" + "---:|---:|" * len(benchmarks)]
    findings = []
    sizes = sorted({r["n_items"] for r in vlm})
    # Less than one answer's worth of accuracy is not a difference.
    one_answer = 100 / sizes[0] if sizes else 0.0
    for model, switches, how in order:
        cells = []
        for b in benchmarks:
            v = value.get((model, b))
            full = value.get(("TG-LLaVA-tiny", b))
            d = None if v is None or full is None or model == "TG-LLaVA-tiny" else v - full
            cells.append(f"{v:.1f}" if v is not None else "—")
            cells.append(f"{d:+.1f}" if d is not None else "")
        lines.append(f"| {model} | {switches} | {how} | " + " | ".join(cells) + " |")
        if model != "TG-LLaVA-tiny":
            deltas = [value[(model, b)] - value[("TG-LLaVA-tiny", b)] for b in benchmarks
                      if (model, b) in value and ("TG-LLaVA-tiny", b) in value]
            if deltas:
                mean = sum(deltas) / len(deltas)
                verdict = ("lower than" if mean < -one_answer else "higher than" if mean > one_answer
                           else "within one answer of")
                findings.append(f"- {switches} ({how}): mean Δ {mean:+.1f} points over {len(deltas)} benchmarks, "
                                f"{verdict} the full model.")
    findings.append(_chance_finding(vlm))
    item_points = ", ".join(f"{100 / n:.1f}" for n in sizes)
    start = ("assembled from a tiny CLIP and LLM pretrained on the synthetic domain, "
             "tools/pretrain_tiny_components.py" if pretrained_parts else "random-initialised")
    lines += ["", "## Findings", "", *findings, "",
              f"Held-out items per benchmark: {', '.join(map(str, sizes))}, so one answer is {item_points} "
              "accuracy points: deltas of a few points are a few answers.",
              "Δ = row − full TG model, accuracy points. Inference-time switches reuse the trained TG weights "
              "with a module turned off (TG-DP off also removes its detail tokens from the LLM input), so they "
              "measure how much the trained model relies on that module, not what training without it gives.",
              f"These are tiny models ({start}) trained for minutes on a synthetic task; the numbers show the "
              "machinery, not the paper's claims."]
    return "\n".join(lines) + "\n"


def _phase_fingerprints(settings: DemoSettings) -> tuple[str, str]:
    """Fingerprints of the data phase and of the training (which every later phase builds on)."""
    data_fp = _fingerprint(settings, "seed", "n_stage1", "n_stage2", "n_test", "image_size")
    train_fp = data_fp + _fingerprint(settings, "pretrain_steps", "finetune_steps", "batch_size",
                                      "gradient_accumulation_steps", "pretrain_lr", "finetune_lr",
                                      **_model_inputs(settings))
    return data_fp, train_fp


def run_demo(out: str | Path, settings: DemoSettings | None = None, *, fresh: bool = False,
             progress: Callable[[str], None] | None = None) -> DemoResult:
    """Run every phase (see the module docstring) and write the artefacts under ``out``."""
    from .training.synthetic import generate_synthetic_dataset

    settings = settings or DemoSettings()
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    progress = progress or (lambda message: logger.info("%s", message))
    phases = _Phases(out, fresh, progress)

    def make_data():
        synth = generate_synthetic_dataset(
            out / "data", seed=settings.seed, n_train_stage1=settings.n_stage1, n_train_stage2=settings.n_stage2,
            n_test=settings.n_test, image_size=settings.image_size, overwrite=True,
        )
        fields = ("stage1_json", "stage2_json", "image_dir", "lmudata_dir", "vlmeval_config", "lmms_include_path",
                  "card_path")
        return {**{f: str(getattr(synth, f)) for f in fields}, "lmms_tasks": synth.lmms_tasks,
                "vlmeval_datasets": synth.vlmeval_datasets}

    data_fp, train_fp = _phase_fingerprints(settings)
    data = phases.run("data", data_fp, make_data)
    trained = phases.run("train", train_fp, lambda: _train(settings, data, out),
                         outputs=tuple(out / "models" / variant for variant in TRAINED.values()))
    ablations = phases.run("ablate", train_fp, lambda: _ablate(trained, out),
                           outputs=(out / "models" / "inference-ablations",))
    all_models = {**trained, **ablations}
    vlm_dir = phases.run("vlmevalkit", train_fp, lambda: _vlmevalkit(all_models, data, out),
                         outputs=(out / "eval" / "vlmevalkit",))
    lmms_dir = phases.run("lmms-eval", train_fp + str(settings.lmms_batch_size),
                          lambda: _lmms_eval(trained, data, out, settings.lmms_batch_size),
                          outputs=(out / "eval" / "lmms_eval",))
    report = phases.run("report", train_fp + str(settings.lmms_batch_size) + f"-report{REPORT_FORMAT}",
                        lambda: _report(all_models, data, {"vlmevalkit": vlm_dir, "lmms_eval": lmms_dir}, out))

    rows = _accuracy_rows(report)
    ablation_path = out / "report" / "ablation_report.md"
    ablation_path.write_text(_ablation_markdown(rows, pretrained_parts=settings.components is not None))
    summary = {
        "settings": dataclasses.asdict(settings),
        "phase_seconds": phases.seconds,
        "total_seconds": sum(phases.seconds.values()),
        "reused_phases": phases.reused,
        "models": all_models,
        "accuracy": rows,
        "artefacts": {"results_csv": report["results_csv"], "leaderboard": report["leaderboard"],
                      "ablation_report": str(ablation_path)},
    }
    summary_path = out / "demo_summary.json"
    summary_path.write_text(json.dumps(summary, indent=2, default=str))
    return DemoResult(out, phases.seconds, phases.reused, Path(report["results_csv"]), Path(report["leaderboard"]),
                      ablation_path, rows, summary_path)


__all__ = ["DemoSettings", "DemoResult", "run_demo", "benchmark_specs", "write_model_mapping", "TRAINED",
           "INFERENCE_ABLATIONS"]
