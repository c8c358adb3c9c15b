"""hir's cache folder, where what is fetched or converted once is kept: built-in models, the
BIG-bench task files, NLTK's sentence model for IFEval."""

from __future__ import annotations

import os
from pathlib import Path


def hir_cache() -> Path:
    """$HIR_CACHE_DIR, else ~/.cache/hir."""
    return Path(os.environ.get("HIR_CACHE_DIR") or Path.home() / ".cache" / "hir")
