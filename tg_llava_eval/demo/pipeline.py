"""The demo's pipeline: :func:`run_demo` and its six phases, run in order by :class:`~.phases.Phases`.

Phases (each writes a marker under ``<out>/.phases/``; a second run reuses a finished phase whose
settings did not change, unless ``fresh=True``):

1. **data** — the deterministic synthetic benchmark of :mod:`tg_llava_eval.demo.synthetic`
   (coloured shapes in a 2×2 grid; training captions and instructions; held-out MCQ, yes/no and
   short-answer sets in both toolkits' local formats);
2. **train** — ``tiny`` (TG-LLaVA) and ``tiny-baseline`` (LLaVA-1.5, same sizes), each assembled
   by ``tg-llava-eval create`` from the pretrained tiny CLIP and LLM in
   :data:`~.settings.COMPONENTS_DIR` (as the paper starts from CLIP and a pretrained LLM), through
   both stages with the real
   ``tg-llava-eval train`` CLI (:func:`tg_llava_eval.training.trainer.run_stage`), the two models
   side by side, one single-threaded process each;
3. **ablate** — inference-time switches of the trained TG model: TG-FOM off and TG-DP off (the
   trained LLaVA-1.5 model is the "both off" row, trained as such);
4. **vlmevalkit** — every model through the real VLMEvalKit (the packaged runner behind ``run.py``, with ``--config``);
5. **lmms-eval** — the TG model and the baseline through the real lmms-eval CLI
   (``--model tg_llava``), generation and log-likelihood tasks, side by side;
6. **report** — ``tg-llava-eval collect`` (with a model mapping, ``report/models.csv``, that names
   the lmms-eval rows, which lmms-eval names by checkpoint path, like the VLMEvalKit rows) +
   ``tg-llava-eval leaderboard`` (md, csv, xlsx, html + charts), then the ablation report and the
   accuracy-vs-chance table (:mod:`.ablation_report`).

Everything is seeded: two runs give the same numbers. Timings and what the models learn:
``docs/demo.md``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .ablation_report import ablation_markdown, accuracy_rows
from .phases import REPORT_FORMAT, Phases, phase_fingerprints
from .settings import INFERENCE_ABLATIONS, TRAINED, DemoResult, DemoSettings

logger = logging.getLogger(__name__)


def _run(cmd: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
    """Run a subprocess with its output in ``log_path``; raise with the log's tail on failure."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ, **(env or {}))
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=str(log_path.parent))
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
    from ..training.trainer import REPORT_NAME

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
    """The :data:`INFERENCE_ABLATIONS` of the trained TG model: copies of its checkpoint with one
    module switched off (``checkpoints.switching.switch_checkpoint``), with the trained weights, not retrained."""
    from ..checkpoints.switching import switch_checkpoint

    source = trained["TG-LLaVA-tiny"]["checkpoint"]
    made = {}
    for name, (variant, fom, dp) in INFERENCE_ABLATIONS.items():
        target = out / "models" / "inference-ablations" / variant
        switch_checkpoint(source, target, variant=variant, use_text_guided_mask=fom, use_detail_perceiver=dp)
        made[name] = {"variant": variant, "checkpoint": str(target), "source": source, "kind": "inference-time switch"}
    return made


def _vlmevalkit(models: dict, data: dict, out: Path) -> str:
    """Every model through the real VLMEvalKit: one ``--config`` JSON naming each checkpoint
    and the synthetic sets (``$LMUData`` = the data's TSV folder), judged by exact matching.

    Returns:
        The ``--work-dir`` (one folder per model, read by ``collect``).
    """
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
    _run([sys.executable, "-m", "tg_llava_eval.model_wrappers.vlmevalkit_run", "--config", str(config_path), "--work-dir", str(work_dir),
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


def _collected_samples(results_csv: Path):
    """The samples frame ``collect`` wrote beside ``results_csv`` (per-item scores for the paired
    statistics of the ablation report)."""
    from tg_llava_eval.cli.collect import samples_path_for
    from tg_llava_eval.results import read_samples_csv, samples_to_frame

    return samples_to_frame(read_samples_csv(samples_path_for(results_csv)))


def _report(models: dict, data: dict, eval_dirs: dict, out: Path) -> dict:
    """``tg-llava-eval collect`` over both toolkits' outputs, then ``tg-llava-eval leaderboard``.

    Returns:
        The paths of ``results.csv`` and the leaderboard folder, the records (as dicts), the data
        card's chance levels and held-out counts: what :func:`~.ablation_report.accuracy_rows` reads.
    """
    from ..cli import main as cli_main
    from ..results import read_records_csv

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


def run_demo(out: str | Path, settings: DemoSettings | None = None, *, fresh: bool = False,
             progress: Callable[[str], None] | None = None) -> DemoResult:
    """Run every phase (see the module docstring) and write the artefacts under ``out``."""
    from .synthetic.dataset import generate_synthetic_dataset

    settings = settings or DemoSettings()
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    progress = progress or (lambda message: logger.info("%s", message))
    phases = Phases(out, fresh, progress)

    def make_data():
        synth = generate_synthetic_dataset(
            out / "data", seed=settings.seed, n_train_stage1=settings.n_stage1, n_train_stage2=settings.n_stage2,
            n_test=settings.n_test, image_size=settings.image_size, overwrite=True,
        )
        fields = ("stage1_json", "stage2_json", "image_dir", "lmudata_dir", "vlmeval_config", "lmms_include_path",
                  "card_path")
        return {**{f: str(getattr(synth, f)) for f in fields}, "lmms_tasks": synth.lmms_tasks,
                "vlmeval_datasets": synth.vlmeval_datasets}

    data_fp, train_fp = phase_fingerprints(settings)
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

    rows = accuracy_rows(report)
    ablation_path = out / "report" / "ablation_report.md"
    ablation_path.write_text(ablation_markdown(rows, pretrained_parts=settings.components is not None,
                                               samples=_collected_samples(Path(report["results_csv"]))))
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


__all__ = ["benchmark_specs", "run_demo", "write_model_mapping"]
