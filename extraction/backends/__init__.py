"""Backends by name. Each entry is imported only when asked for (torch stays out of the consumer)."""

from __future__ import annotations

import importlib

from extraction.backends.base import BackendError, BackendOutput, ExtractionBackend, Sample

REGISTRY: dict[str, str] = {
    "null": "extraction.backends.null:NullBackend",
    "rules": "extraction.backends.rules:RulesBackend",
    "local": "extraction.backends.local:LocalBackend",
    "vllm": "extraction.backends.vllm:VLLMBackend",
}


def get_backend(name: str, settings=None) -> ExtractionBackend:
    """Instantiate a backend by registry name; settings default to ``get_settings()``."""
    if name not in REGISTRY:
        raise KeyError(f"unknown backend {name!r}; known: {', '.join(REGISTRY)}")
    module_name, class_name = REGISTRY[name].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(settings)


__all__ = ["REGISTRY", "get_backend", "BackendError", "BackendOutput", "ExtractionBackend", "Sample"]
