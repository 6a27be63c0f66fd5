"""One real SmolLM2 backend per test process: loading the GGUF takes 20-70 s on 2 cores."""

from __future__ import annotations

import functools
import os


@functools.lru_cache(maxsize=1)
def shared_local_backend():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from extraction.backends import get_backend

    from cmrx.config import get_settings

    settings = get_settings().model_copy(deep=True)
    settings.llm.int8 = True  # one load serves both decoders: the int8 copy and the float model
    return get_backend("local", settings)
