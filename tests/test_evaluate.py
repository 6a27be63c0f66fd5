"""The evaluation harness on the dev set with the null backend, and the error taxonomy."""

import json
import subprocess
import sys

import pytest

from extraction.evaluate import auroc, classify_error, expected_calibration_error, matches
from helpers import DEV_DIR, REPO
from schemas.catalog import FIELD_KEYS

KEYS = ["variable_accuracy", "report_accuracy", "category_accuracy", "errors", "per_field", "error_rate_below_threshold",
        "error_rate_above_threshold", "auroc", "ece", "review_rate", "n_reports", "seconds_per_report"]


def test_matching_rule():
    assert matches(None, None)
    assert matches(100.4, 100) and not matches(100.6, 100)
    assert matches(0.005, 0) and not matches(0.02, 0)
    assert not matches(None, 1) and not matches(1, None)


def test_error_types():
    truth = dict.fromkeys(FIELD_KEYS) | {"LVEDV": 200.0, "RVEDV": 150.0, "LVEF": 50.0}
    assert classify_error("LVEDV", 200.0, truth, False) is None
    assert classify_error("LVEDV", None, truth, False) == "omission"
    assert classify_error("LVEDV", 190.0, truth, False) == "inexact"
    assert classify_error("LVEDV", 150.0, truth, False) == "confusion"
    assert classify_error("LVEDV", 80.0, truth, False) == "wrong"
    assert classify_error("LVESV", 80.0, truth, False) == "hallucination"
    assert classify_error("LVEDV", None, truth, True) == "invalid"


def test_auroc_and_ece():
    assert auroc([0.9, 0.8, 0.3, 0.2], [True, True, False, False]) == 1.0
    assert auroc([0.2, 0.3, 0.8, 0.9], [True, True, False, False]) == 0.0
    assert auroc([0.5, 0.5], [True, False]) == 0.5
    assert expected_calibration_error([1.0, 1.0], [True, True]) == 0.0
    assert expected_calibration_error([0.8, 0.8], [False, False]) == pytest.approx(0.8)


def test_cli_null_backend_on_dev(tmp_path):
    out, plot = tmp_path / "r.json", tmp_path / "rel.png"
    proc = subprocess.run([sys.executable, "-m", "cmrx.cli", "eval", "--backend", "null", "--data", str(DEV_DIR),
                           "--out", str(out), "--plot", str(plot)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert set(KEYS) <= set(result)
    assert result["n_reports"] == 12
    nulls = sum(v is None for p in DEV_DIR.glob("*.json") for v in json.loads(p.read_text())["fields"].values())
    assert result["variable_accuracy"] == pytest.approx(nulls / (12 * 52))
    assert result["errors"]["omission"] == 12 * 52 - nulls
    assert plot.stat().st_size > 1000
    assert "variable-level accuracy" in proc.stdout


def test_bad_files_are_named_and_counted(tmp_path):
    for src in sorted(DEV_DIR.glob("000[12].*")):
        (tmp_path / src.name).write_bytes(src.read_bytes())
    truth = (DEV_DIR / "0001.json").read_text()
    (tmp_path / "9001.txt").write_bytes(b"")
    (tmp_path / "9002.txt").write_bytes(b"\x00\x01binary")
    (tmp_path / "9003.txt").write_bytes("LVEF 50 %".encode("utf-16"))
    for n in ("9001", "9002", "9003"):
        (tmp_path / f"{n}.json").write_text(truth)
    proc = subprocess.run([sys.executable, "-m", "cmrx.cli", "eval", "--backend", "null", "--data", str(tmp_path),
                           "--out", str(tmp_path / "r.json")], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["n_reports"] == 5 and result["n_failed_reports"] == 3
    assert any("9001.txt: empty" in f for f in result["failures"])
    assert any("9002.txt: binary" in f for f in result["failures"])
    assert any("9003.txt" in f and ("UTF-8" in f or "binary" in f) for f in result["failures"])
    assert result["errors"]["invalid"] > 0
