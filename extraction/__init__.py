"""Extraction pipeline: de-identify, prompt, backend, resolve, normalize, score, route, evaluate."""
