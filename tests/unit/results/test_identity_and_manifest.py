"""Model identity from declared tables, user mappings and run manifests (never name substrings)."""

from __future__ import annotations

import json

import pytest

from tests.python_probe import run_python_probe
from tg_llava_eval.results import (
    ModelIdentity,
    ResultFileError,
    RunManifest,
    read_model_mapping,
    read_run_manifest,
    resolve_identity,
    write_run_manifest,
)
from tg_llava_eval.results.identity import VARIANTS, MappingEntry, variant_switches
from tg_llava_eval.results.manifest import MANIFEST_NAME, find_run_manifest


def test_variant_table_covers_the_project_variants():
    for llm_name, llm in (("vicuna-13b", "Vicuna-13B"), ("llama3-8b", "Llama-3-8B"), ("qwen2-7b", "Qwen2-7B")):
        tg = f"tg-llava-{llm_name}"
        assert VARIANTS[tg].is_full_model and VARIANTS[tg].llm == llm
        assert (VARIANTS[f"{tg}-no-fom"].text_guided_mask, VARIANTS[f"{tg}-no-fom"].detail_perceiver) == (False, True)
        assert (VARIANTS[f"{tg}-no-dp"].text_guided_mask, VARIANTS[f"{tg}-no-dp"].detail_perceiver) == (True, False)
        assert VARIANTS[f"llava-1.5-{llm_name}"].method == "LLaVA-1.5"
    assert {"tiny", "tiny-baseline", "tiny-no-fom", "tiny-no-dp"} <= set(VARIANTS)


def test_resolution_order():
    manifest = RunManifest(variant="tg-llava-qwen2-7b-no-dp", llm="qwen2")
    # Preset table and exact variant names.
    assert resolve_identity("TG-LLaVA-Qwen2-7B").variant == "tg-llava-qwen2-7b"
    assert resolve_identity("tiny-no-fom").resolved_by == "variant-name"
    # The generic preset is not identified by its name...
    assert resolve_identity("tg_llava").variant == ""
    # ...but by lmms-eval's variant= argument, the manifest, or a mapping, in increasing priority.
    assert resolve_identity("tg_llava", model_args_variant="tiny").variant == "tiny"
    assert resolve_identity("tg_llava", manifest=manifest, model_args_variant="tiny").variant == "tg-llava-qwen2-7b-no-dp"
    from tg_llava_eval.results.identity import MappingEntry

    mapped = resolve_identity("tg_llava", mapping={"tg_llava": MappingEntry("tiny-baseline")}, manifest=manifest)
    assert (mapped.variant, mapped.method, mapped.llm, mapped.resolved_by) == ("tiny-baseline", "LLaVA-1.5", "tiny", "mapping")


def test_no_substring_matching():
    # Names that merely contain a variant or preset name are not that model.
    assert resolve_identity("my-TG-LLaVA-Qwen2-7B-copy").variant == ""
    assert resolve_identity("tg-llava-qwen2-7b-finetuned").variant == ""


def test_aliases_are_exact_alternatives():
    assert resolve_identity("ckpts/x", aliases=("ckpts__x", "tiny")).variant == "tiny"


def test_model_mapping_csv(tmp_path):
    path = tmp_path / "models.csv"
    path.write_text("model,variant,method,llm\nckpts/run7,my-variant,MyMethod,Qwen2-7B-Instruct\ntg_llava,tiny,,\n")
    mapping = read_model_mapping(path)
    identity = resolve_identity("ckpts/run7", mapping=mapping)
    assert (identity.variant, identity.method, identity.llm) == ("my-variant", "MyMethod", "Qwen2-7B")
    assert resolve_identity("tg_llava", mapping=mapping).method == "TG-LLaVA"


def test_model_mapping_display_names(tmp_path):
    path = tmp_path / "models.csv"
    # Columns by header name; lmms-eval's path and VLMEvalKit's folder of one checkpoint share a
    # display name (the VLMEvalKit row spells out the table's labels: still the same model).
    path.write_text(
        "name,model,variant,llm,method\n"
        "TG-LLaVA-tiny,/ckpts/tiny/stage2,tiny,,\n"
        "TG-LLaVA-tiny,TG-LLaVA-tiny-folder,tiny,tiny,TG-LLaVA\n"
        ",/ckpts/base/stage2,tiny-baseline,,\n"
    )
    mapping = read_model_mapping(path)
    assert mapping["/ckpts/tiny/stage2"] == MappingEntry("tiny", name="TG-LLaVA-tiny")
    assert mapping["/ckpts/base/stage2"].name == ""
    identity = resolve_identity("/ckpts/tiny/stage2", mapping=mapping)
    assert (identity.variant, identity.resolved_by, identity.name) == ("tiny", "mapping", "TG-LLaVA-tiny")
    assert identity.table_name("/ckpts/tiny/stage2") == "TG-LLaVA-tiny"
    # Found through an exact alias (lmms-eval's sanitized name) too.
    assert resolve_identity("/elsewhere", mapping=mapping, aliases=("/ckpts/tiny/stage2",)).name == "TG-LLaVA-tiny"
    # No name: the toolkit's name stays, as for every rule other than the mapping.
    assert resolve_identity("/ckpts/base/stage2", mapping=mapping).table_name("/ckpts/base/stage2") == "/ckpts/base/stage2"
    assert resolve_identity("tiny-no-fom", mapping=mapping).table_name("tiny-no-fom") == "tiny-no-fom"


def test_a_display_name_is_never_guessed(tmp_path):
    path = tmp_path / "models.csv"
    path.write_text("model,variant,name\n/ckpts/tiny/stage2,tiny,TG-LLaVA-tiny\n")
    mapping = read_model_mapping(path)
    for near in ("/ckpts/tiny/stage2/", "/ckpts/tiny", "ckpts/tiny/stage2", "/CKPTS/tiny/stage2"):
        assert resolve_identity(near, mapping=mapping).name == ""


@pytest.mark.parametrize(
    "text, message",
    [
        ("name,variant\na,b\n", r"missing column\(s\) \['model'\]"),
        ("model,variant\na,\n", "line 2: 'model' and 'variant' must not be empty"),
        ("model,variant\na,tiny\na,tiny-baseline\n", "line 3: model 'a' is mapped twice"),
        ("model,variant,display_name\na,tiny,A\n", r"unknown column\(s\) \['display_name'\]"),
        # One display name for two different models, by variant, by method, or through a row
        # without 'name' (it displays as its model).
        ("model,variant,name\na,tiny,X\nb,tiny,X\nc,tiny-baseline,X\n",
         "line 4: display name 'X' .*variant 'tiny-baseline'.* already used on line 2 for variant 'tiny'"),
        ("model,variant,method,name\na,my-run,A,X\nb,my-run,B,X\n", "line 3: display name 'X' .*method 'B'.*line 2"),
        ("model,variant,name\na,tiny,X\nX,tiny-baseline,\n", "line 3: display name 'X' \\(model 'X'"),
    ],
)
def test_bad_model_mapping(tmp_path, text, message):
    path = tmp_path / "models.csv"
    path.write_text(text)
    with pytest.raises(ResultFileError, match=message) as error:
        read_model_mapping(path)
    assert str(path) in str(error.value)


def test_unnamed_trailing_column_is_not_an_unknown_column(tmp_path):
    path = tmp_path / "models.csv"
    path.write_text("model,variant,name,\na,tiny,A,\n")
    assert read_model_mapping(path) == {"a": MappingEntry("tiny", name="A")}


def test_manifest_round_trip_and_lookup(tmp_path):
    manifest = RunManifest(
        variant="tiny-no-dp", toolkit="vlmevalkit", toolkit_version="0.0.20", model_name="tg_llava",
        checkpoint="ckpts/tiny", created="2026-01-01T00:00:00+00:00", switches={"detail_perceiver": False},
    )
    run_dir = tmp_path / "work" / "tg_llava" / "T20260101-000000"
    path = write_run_manifest(tmp_path / "work" / "tg_llava", manifest)
    assert path.name == MANIFEST_NAME and json.loads(path.read_text())["schema"] == "tg_llava_run/1"
    assert read_run_manifest(path) == manifest
    run_dir.mkdir()
    assert find_run_manifest(run_dir, stop=tmp_path / "work" / "tg_llava") == path
    assert find_run_manifest(run_dir) is None  # without a stop, only the folder itself


@pytest.mark.parametrize(
    "data, message",
    [
        ([], "must be a JSON object"),
        ({"variant": "tiny"}, "'schema' must be 'tg_llava_run/1'"),
        ({"schema": "tg_llava_run/2", "variant": "tiny"}, "'schema' must be 'tg_llava_run/1'"),
        ({"schema": "tg_llava_run/1"}, "no 'variant' key"),
        ({"schema": "tg_llava_run/1", "variant": "tiny", "checkpoint": 3}, "'checkpoint' must be a string or null"),
        ({"schema": "tg_llava_run/1", "variant": "tiny", "switches": {"fom": True}}, "'switches' must map"),
    ],
)
def test_bad_manifests(tmp_path, data, message):
    path = tmp_path / MANIFEST_NAME
    path.write_text(json.dumps(data))
    with pytest.raises(ResultFileError, match=message):
        read_run_manifest(path)


def test_manifests_written_by_the_wrappers(tmp_path, caplog):
    caplog.set_level("WARNING")
    """The exact key set both wrappers write (model_wrappers.vlmevalkit.run_manifest, TGLlava.run_manifest)."""
    written = {
        "schema": "tg_llava_run/1", "toolkit": "lmms-eval", "toolkit_version": "0.7.3", "model_name": "tg_llava",
        "variant": None, "llm": "qwen2", "checkpoint": "/ckpts/custom", "tg_llava_eval_version": "0.1.0",
        "created": "2026-01-01T00:00:00+00:00", "future_key": 1,
    }
    path = tmp_path / MANIFEST_NAME
    path.write_text(json.dumps(written))
    manifest = read_run_manifest(path)
    assert (manifest.variant, manifest.llm, manifest.extra) == ("", "qwen2", {"future_key": 1})
    assert any("future_key" in m for m in caplog.messages)
    # A custom checkpoint: no variant, but the LLM is kept; a known variant's table labels win.
    assert resolve_identity("tg_llava", manifest=manifest) == ModelIdentity("", "", "qwen2", "unknown")
    known = RunManifest(variant="tg-llava-qwen2-7b", llm="qwen2")
    assert resolve_identity("tg_llava", manifest=known).llm == "Qwen2-7B"


def test_manifest_switches_define_unknown_variants():
    manifest = RunManifest(variant="my-ablation", llm="Qwen2-7B-Instruct", switches={"text_guided_mask": False, "detail_perceiver": True})
    info = variant_switches("my-ablation", manifest)
    assert (info.method, info.llm, info.text_guided_mask, info.detail_perceiver) == ("TG-LLaVA", "Qwen2-7B", False, True)
    assert variant_switches("my-ablation") is None
    # A known variant's switches can be overridden one at a time.
    override = variant_switches("tiny", RunManifest(variant="tiny", switches={"detail_perceiver": False}))
    assert (override.text_guided_mask, override.detail_perceiver) == (True, False)


def test_identity_table_reads_the_catalogue_without_torch():
    """results and leaderboards read the variant catalogue itself: no mirror, no torch."""
    run_python_probe(
        "import sys\n"
        "for name in ('torch', 'transformers'): sys.modules[name] = None\n"
        "from tg_llava_eval.results.identity import MODEL_PRESETS, VARIANTS\n"
        "assert MODEL_PRESETS['TG-LLaVA-Llama3-8B-no-FOM'] == 'tg-llava-llama3-8b-no-fom'\n"
        "assert MODEL_PRESETS['LLaVA-1.5-Qwen2-7B-TG'] == 'llava-1.5-qwen2-7b'\n"
        "assert VARIANTS['tiny-no-dp'].method == 'TG-LLaVA'\n"
    )
