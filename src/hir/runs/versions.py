"""What every result file records next to its numbers: library versions and the machine."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

_PACKAGES = ("hir", "torch", "transformers", "accelerate", "datasets", "tokenizers", "numpy")


def library_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    try:
        import torch

        versions["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    except Exception:  # noqa: BLE001 - versions must never break a run
        versions["device"] = "unknown"
    return versions
