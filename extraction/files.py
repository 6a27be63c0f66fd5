"""Reading report files and dev-set style folders (``NNNN.txt`` + ``NNNN.json`` truth)."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from schemas.catalog import CATEGORIES, FIELD_KEYS


class ReportFileError(ValueError):
    """A report file that cannot be used (empty, binary, not UTF-8). Names the file."""


class Truth(BaseModel):
    model_config = ConfigDict(extra="allow")
    fields: dict[str, float | None]
    CATEGORY: str | None = None
    phi: list[str] = []
    style: str | None = None


class LabelledReport(BaseModel):
    report_id: str
    path: Path
    truth: Truth | None = None


def read_report_text(path: Path, max_bytes: int = 5_000_000) -> str:
    data = path.read_bytes()
    if not data.strip():
        raise ReportFileError(f"{path}: empty report file")
    if len(data) > max_bytes:
        raise ReportFileError(f"{path}: {len(data)} bytes is over the {max_bytes}-byte limit")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise ReportFileError(f"{path}: binary content (NUL byte at offset {nul})")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReportFileError(f"{path}: not UTF-8 (invalid byte at offset {exc.start})") from exc


def load_folder(folder: Path) -> list[LabelledReport]:
    """Every ``*.txt`` in the folder, with its ``.json`` truth when there is one."""
    reports = []
    for txt in sorted(Path(folder).glob("*.txt")):
        truth_path = txt.with_suffix(".json")
        truth = None
        if truth_path.exists():
            truth = Truth.model_validate(json.loads(truth_path.read_text(encoding="utf-8")))
            missing = set(FIELD_KEYS) - set(truth.fields)
            if missing:
                raise ReportFileError(f"{truth_path}: truth lacks fields {sorted(missing)[:5]}")
            if truth.CATEGORY is not None and truth.CATEGORY not in CATEGORIES:
                raise ReportFileError(f"{truth_path}: unknown CATEGORY {truth.CATEGORY!r}")
        reports.append(LabelledReport(report_id=txt.stem, path=txt, truth=truth))
    if not reports:
        raise ReportFileError(f"{folder}: no *.txt reports")
    return reports
