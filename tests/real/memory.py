"""Peak resident memory of one test case, and the analytic estimate it is checked against.

How the peak is measured, and why this way
------------------------------------------
Each case runs inside :class:`PeakRSS`, in the pytest process itself. On entry the kernel's
high-water mark of the process (``VmHWM`` in ``/proc/self/status``) is reset to the current RSS by
writing ``5`` to ``/proc/self/clear_refs`` (Linux >= 4.0); on exit ``VmHWM`` is the peak of the
case. The kernel updates the mark on every page it maps, so no spike is missed, which a sampling
thread cannot promise (a 2 GB transient lives for a few milliseconds when a tensor is cast), and
the reset makes it per case without leaving the process. The alternative, one subprocess per case
reading its ``ru_maxrss``, is exact too but would rebuild or reload a 5-7 GB model for every case
(``ru_maxrss`` itself cannot be reset), which the tier's 10-minute budget does not allow: the
presets are built once per module and shared by the cases. Where ``clear_refs`` cannot be written
(another kernel, a locked-down container), a thread samples ``/proc/self/statm`` every
:data:`SAMPLE_SECONDS` instead, and the report says so.

RSS counts the pages of memory-mapped files the process has touched: ``from_pretrained`` maps
safetensors files and a model loaded that way is resident once it has been used, so the estimates
count a loaded model's bytes like an allocated one's.

The estimate
------------
``runtime`` (the process's RSS before the tier builds anything: Python, torch, transformers,
tokenizers; measured once per session) + the bytes of every parameter resident during the case
(``numel x element size``, per model alive) + the case's transient tensors, written out per case
from the configs (activations, state dicts read into memory, gradients and Adam moments). A case
fails when its peak exceeds the estimate by more than :data:`TOLERANCE`.
"""

from __future__ import annotations

import ctypes
import gc
import threading
from dataclasses import dataclass, field

#: A case fails when its peak RSS exceeds the estimate by more than this fraction.
TOLERANCE = 0.5
#: Sampling period of the fallback measurement (seconds).
SAMPLE_SECONDS = 0.005
_PAGE = 4096
GIB = 1024**3


def _status_kib(field_name: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field_name}")


def current_rss() -> int:
    """Resident set size of this process, in bytes."""
    return _status_kib("VmRSS") * 1024


def release_freed_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS, so that a case starts from what is
    really alive (glibc keeps small freed blocks in its arenas otherwise)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def _reset_high_water_mark() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


class PeakRSS:
    """``with PeakRSS() as peak: ...`` then ``peak.bytes`` (and ``peak.method``)."""

    def __init__(self) -> None:
        self.bytes = 0
        self.start = 0
        self.method = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        with open("/proc/self/statm", encoding="ascii") as statm:
            while not self._stop.is_set():
                statm.seek(0)
                self.bytes = max(self.bytes, int(statm.read().split()[1]) * _PAGE)
                self._stop.wait(SAMPLE_SECONDS)

    def __enter__(self) -> PeakRSS:
        release_freed_memory()
        self.start = current_rss()
        if _reset_high_water_mark():
            self.method = "VmHWM reset by clear_refs"
        else:
            self.method = f"statm sampled every {SAMPLE_SECONDS * 1000:.0f} ms"
            self.bytes = self.start
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        else:
            self.bytes = _status_kib("VmHWM") * 1024


@dataclass
class Estimate:
    """Named byte counts whose sum is the expected peak RSS of a case."""

    parts: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, nbytes: float) -> Estimate:
        self.parts[name] = self.parts.get(name, 0) + int(nbytes)
        return self

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def describe(self) -> str:
        return " + ".join(f"{name} {value / GIB:.2f}" for name, value in self.parts.items())


def parameter_bytes(module) -> int:
    """Bytes of a module's parameters and buffers (shared tensors once)."""
    seen, total = set(), 0
    for tensor in [*module.parameters(), *module.buffers()]:
        if tensor.data_ptr() in seen or tensor.device.type == "meta":
            continue
        seen.add(tensor.data_ptr())
        total += tensor.numel() * tensor.element_size()
    return total


def count_parameters(module) -> int:
    """Number of parameters of a module (meta tensors included)."""
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------------------- activations
def vision_activation_bytes(config, images: int, element: int) -> int:
    """The CLIP tower on ``images`` images: every hidden state is kept (``output_hidden_states``,
    the model reads layer -2) plus one layer's attention scores/probabilities and MLP activations."""
    vision = config.vision_config
    tokens = (vision.image_size // vision.patch_size) ** 2 + 1  # patches + CLS
    kept = (vision.num_hidden_layers + 1) * tokens * vision.hidden_size
    layer = 2 * vision.num_attention_heads * tokens * tokens + 2 * tokens * vision.intermediate_size
    return images * (kept + layer) * element


def fusion_activation_bytes(config, element: int) -> int:
    """TG-FOM, projector and TG-DP on one image: the 2304 crop positions through TG-DP's MLP and
    the 576 queries through the Q-Former's FFN, a few buffers each."""
    positions = config.num_crops * config.num_patches if config.use_detail_perceiver else 0
    width = max(config.vision_config.hidden_size, config.perceiver_config.hidden_size) * 4
    queries = config.num_patches * config.qformer_config.intermediate_size
    return 3 * (positions * width + queries + config.num_patches * config.text_config.hidden_size) * element


def llm_activation_bytes(config, tokens: int, logits_rows: int, element: int) -> int:
    """One decoder layer over ``tokens`` positions (hidden states, q/k/v, the MLP's three
    intermediate tensors, attention scores) and ``logits_rows`` rows of logits, also upcast to
    fp32 (transformers' loss and generation work on float logits)."""
    text = config.text_config
    head_dim = text.hidden_size // text.num_attention_heads
    per_token = 6 * text.hidden_size + 3 * text.intermediate_size + 2 * text.num_key_value_heads * head_dim
    scores = text.num_attention_heads * tokens * tokens
    logits = logits_rows * text.vocab_size * (element + 4)
    return (tokens * per_token + scores) * element + logits
