import pytest

from extraction.normalize import clean_text, convert, parse_number


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("55,3", 55.3), ("1,020", 1020.0), ("~60", 60.0), (".42", 0.42), ("0,42", 0.42), ("12", 12.0),
     ("2.03", 2.03), ("-3,5", -3.5), ("abc", None), ("", None), ("1.2.3", None)],
)
def test_parse_number(raw, expected):
    assert parse_number(raw) == (pytest.approx(expected) if expected is not None else None)


@pytest.mark.parametrize(
    ("value", "unit", "key", "expected"),
    [(69, "in", "HEIGHT", 175.26), (1.73, "m", "HEIGHT", 173), (187, "lbs", "WEIGHT", 84.82177319),
     (58, "mm", "LVEDD", 5.8), (1.2, "s", "PRET1M", 1200), (49.2, "cm²", "RAA4CH", 49.2), (4920, "mm2", "RAA4CH", 49.2),
     (0.442, None, "HCT", 44.2), (44.2, "%", "HCT", 44.2), (120, "ml/m^2", "LVEDVI", 120), (120, "mL/m²", "LVEDVI", 120),
     (159, "cc", "LVEDV", 159), (3.5, "l/min/m2", "LVCOI", 3.5), (62, "/min", "BHR", 62), (5, "ml", "HEIGHT", None)],
)
def test_convert(value, unit, key, expected):
    got = convert(value, unit, key)
    assert got == (pytest.approx(expected) if expected is not None else None)


def test_clean_text_keeps_measurement_lines():
    raw = "BSA: 2.03 m²\n" + "-" * 40 + "\n\n\n\nLV EDV ====== 150 ml\r\nT1 – native: 1010 ms"
    out = clean_text(raw)
    assert "BSA: 2.03 m^2" in out
    assert "LV EDV === 150 ml" in out
    assert "T1 - native: 1010 ms" in out
    assert "\n\n\n" not in out and out.isascii()
