"""LRU cache of the frozen CLIP tower's outputs, keyed by image content.

TG-LLaVA's text guidance acts *after* the vision tower (docs/architecture.md), so the tower's outputs for
the base image and its crops depend on the image alone. Benchmarks ask several questions about one
image (MMBench's circular passes, MME's question pairs, POPE's object probes), so caching them saves
most of the vision compute; the guide tower and TG modules still run per question.

Keys combine a digest of the image content with a fingerprint of everything that shapes the
features (vision config, feature layer, image processing and crop settings, dtype), so two models or
two processors never share an entry by accident. Values are kept on the CPU and moved to the model's
device when used, so the cache does not hold accelerator memory.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from .requests import ImageInput


@dataclass
class CachedFeatures:
    """One image's tower outputs: ``patch [P, Dv]`` and ``crops [C, P, Dv]`` (None without TG-DP)."""

    patch: torch.Tensor
    crops: torch.Tensor | None


def image_digest(image: ImageInput) -> str | None:
    """SHA-256 of an image's content, or ``None`` when it cannot be read (the processor then reports
    the error with the file's name).

    Paths and bytes hash the encoded file; PIL images hash mode, size and pixels.
    """
    digest = hashlib.sha256()
    if isinstance(image, Image.Image):
        digest.update(f"{image.mode}:{image.size}".encode())
        digest.update(image.tobytes())
    elif isinstance(image, (bytes, bytearray)):
        digest.update(bytes(image))
    elif isinstance(image, (str, Path)):
        try:
            digest.update(Path(image).read_bytes())
        except OSError:
            return None
    else:
        return None
    return digest.hexdigest()


def features_fingerprint(model_config, processor) -> str:
    """Digest of the settings that determine the tower outputs of an image."""
    settings = {
        "vision_config": model_config.vision_config.to_dict(),
        "vision_feature_layer": model_config.vision_feature_layer,
        "use_detail_perceiver": model_config.use_detail_perceiver,
        "image_size": processor.image_size,
        "crop_grid": processor.crop_grid,
        "crop_source": processor.crop_source,
        "image_processor": processor.image_processor.to_dict(),
    }
    blob = json.dumps(settings, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class VisionFeatureCache:
    """Thread-safe LRU map ``key -> CachedFeatures`` with hit/miss counters.

    Args:
        max_entries: Capacity; the least recently used entry is evicted beyond it (0 disables).
    """

    def __init__(self, max_entries: int):
        self.max_entries = max_entries
        self._entries: OrderedDict[str, CachedFeatures] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str | None) -> CachedFeatures | None:
        """The entry for ``key`` (counted as a hit) or None (counted as a miss)."""
        with self._lock:
            if key is not None and key in self._entries:
                self._entries.move_to_end(key)
                self.hits += 1
                return self._entries[key]
            self.misses += 1
            return None

    def peek(self, key: str | None) -> CachedFeatures | None:
        """The entry for ``key`` without touching the counters or the LRU order."""
        if key is None:
            return None
        with self._lock:
            return self._entries.get(key)

    def put(self, key: str | None, value: CachedFeatures) -> None:
        """Store ``value`` (detached, on CPU) unless the key is unknown or the cache is disabled."""
        if key is None or self.max_entries <= 0:
            return
        value = CachedFeatures(
            value.patch.detach().to("cpu"),
            value.crops.detach().to("cpu") if value.crops is not None else None,
        )
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Drop every entry and reset the counters."""
        with self._lock:
            self._entries.clear()
            self.hits = self.misses = 0
