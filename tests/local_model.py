"""One real SmolLM2 backend per test process: loading the GGUF takes 20-70 s on 2 cores."""

from __future__ import annotations

import functools
import os


@functools.lru_cache(maxsize=1)
def shared_local_backend():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from extraction.backends import get_backend

    return get_backend("local")
