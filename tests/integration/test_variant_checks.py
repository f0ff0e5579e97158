"""One variant check for every entry point: ``run.py`` (VLMEvalKit) and the lmms-eval wrapper refuse
the same checkpoint for the same reason (``tg_llava_eval.variants.IDENTITY_FIELDS``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tg_llava_eval.errors import TGLlavaConfigError


@pytest.fixture(scope="module")
def wrong_template_checkpoint(tiny_checkpoint, tmp_path_factory) -> Path:
    """The tiny checkpoint with every identity field of ``tiny`` but the template (``qwen_2``
    instead of ``qwen_2_bare``): a checkpoint that would be prompted differently from the variant."""
    copy = tmp_path_factory.mktemp("wrong-template") / "ckpt"
    shutil.copytree(tiny_checkpoint, copy)
    config = json.loads((copy / "config.json").read_text())
    assert config["template"] == "qwen_2_bare"
    config["template"] = "qwen_2"
    (copy / "config.json").write_text(json.dumps(config, indent=2))
    return copy


def test_lmms_eval_wrapper_refuses_a_checkpoint_with_another_template(wrong_template_checkpoint):
    from tg_llava_eval.model_wrappers.lmms_eval import TGLlava

    with pytest.raises(TGLlavaConfigError, match=r"not a tiny checkpoint \(template: checkpoint 'qwen_2' vs variant 'qwen_2_bare'\)"):
        TGLlava(pretrained=str(wrong_template_checkpoint), device="cpu", variant="tiny")


def test_run_py_refuses_a_checkpoint_with_another_template(wrong_template_checkpoint, tmp_path, caplog, monkeypatch):
    monkeypatch.delenv("MMEVAL_ROOT", raising=False)
    from tg_llava_eval.model_wrappers import vlmevalkit_run as run_py

    argv = ["--model", "tg_llava", "--model-path", str(wrong_template_checkpoint), "--variant", "tiny",
            "--data", "MME", "--work-dir", str(tmp_path / "work")]
    assert run_py.main(argv) == 2
    assert "not a tiny checkpoint (template: checkpoint 'qwen_2' vs variant 'qwen_2_bare')" in caplog.text
    assert not (tmp_path / "work").exists()
