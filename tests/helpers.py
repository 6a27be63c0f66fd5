"""Shared test paths (the dev set lives in ../shared beside the checkout)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEV_DIR = REPO.parent / "shared" / "data" / "dev"
