"""Atomic outputs: a SIGKILL at any moment leaves the previous complete output or none.

The deterministic cases kill a writer process inside the write (after part of the output exists);
the random case kills the real ``tg-llava-eval create`` at random moments, several times.
"""

from __future__ import annotations

import json
import logging
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tg_llava_eval.atomic_io import atomic_directory, atomic_file, leftovers, write_text_atomic

#: A writer that SIGKILLs itself in the middle of writing ``target`` (a file or a folder).
KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from tg_llava_eval.atomic_io import atomic_directory, atomic_file

target, kind = Path(sys.argv[1]), sys.argv[2]
if kind == "file":
    with atomic_file(target) as tmp:
        tmp.write_text("half of the new")
        os.kill(os.getpid(), signal.SIGKILL)
else:
    with atomic_directory(target) as tmp:
        (tmp / "config.json").write_text("{}")
        os.kill(os.getpid(), signal.SIGKILL)
"""


def _killed_write(target: Path, kind: str) -> None:
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(target), kind], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def test_a_killed_file_write_leaves_the_previous_file(tmp_path, caplog):
    target = tmp_path / "results.csv"
    write_text_atomic(target, "the previous complete file\n")
    _killed_write(target, "file")
    assert target.read_text() == "the previous complete file\n"
    assert [p.name for p in leftovers(target)] != []  # the killed writer's temporary is still there...
    with caplog.at_level(logging.WARNING):
        write_text_atomic(target, "new\n")  # ...and the next writer says so and ignores it
    assert "ignoring 1 incomplete output(s) a killed earlier run left" in caplog.text
    assert target.read_text() == "new\n"


def test_a_killed_first_write_leaves_nothing(tmp_path):
    target = tmp_path / "board.md"
    _killed_write(target, "file")
    assert not target.exists()


def test_a_killed_folder_write_leaves_the_previous_folder(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_directory(target) as staging:
        (staging / "config.json").write_text('{"complete": true}')
        (staging / "model.safetensors").write_bytes(b"weights")
    _killed_write(target, "folder")
    assert json.loads((target / "config.json").read_text()) == {"complete": True}
    assert (target / "model.safetensors").read_bytes() == b"weights"
    assert len(leftovers(target)) == 1


def test_a_failed_write_removes_its_temporary_and_keeps_the_old(tmp_path):
    target = tmp_path / "ckpt"
    target.mkdir()
    (target / "config.json").write_text("old")
    with pytest.raises(RuntimeError), atomic_directory(target) as staging:
        (staging / "config.json").write_text("new")
        raise RuntimeError("disk full")
    assert (target / "config.json").read_text() == "old" and leftovers(target) == []
    with pytest.raises(RuntimeError), atomic_file(tmp_path / "x.csv") as temporary:
        temporary.write_text("partial")
        raise RuntimeError("disk full")
    assert not (tmp_path / "x.csv").exists() and leftovers(tmp_path / "x.csv") == []


def test_a_folder_is_replaced_whole(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_directory(target) as staging:
        (staging / "old_only.json").write_text("1")
    with atomic_directory(target) as staging:
        (staging / "config.json").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["config.json"] and leftovers(target) == []


def test_leftovers_are_only_our_temporaries(tmp_path):
    target = tmp_path / "out"
    for name in (".out.tmp-12", ".out.old-7", ".out.tmp-x", ".outer.tmp-3", "out.tmp-4"):
        (tmp_path / name).mkdir()
    assert [p.name for p in leftovers(target)] == [".out.old-7", ".out.tmp-12"]


@pytest.mark.slow
def test_create_killed_at_random_moments_never_leaves_a_half_checkpoint(tmp_path):
    """The real ``tg-llava-eval create``, SIGKILLed at random points: the folder is absent or complete."""
    from tg_llava_eval.modeling import TGLlavaForConditionalGeneration

    rng = random.Random(0)
    out = tmp_path / "ckpt"
    outcomes = []
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-m", "tg_llava_eval.cli", "create", "--variant", "tiny", "-o", str(out)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, 6.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if out.exists():
            TGLlavaForConditionalGeneration.from_pretrained(out)  # complete: it loads
            outcomes.append("complete")
        else:
            outcomes.append("absent")
    proc = subprocess.run([sys.executable, "-m", "tg_llava_eval.cli", "create", "--variant", "tiny", "-o", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    TGLlavaForConditionalGeneration.from_pretrained(out)
    assert leftovers(out) == [] or "ignoring" in proc.stderr, outcomes
