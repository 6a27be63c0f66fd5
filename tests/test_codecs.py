"""Input codecs: every dev report survives HL7 v2 (3 variants, CR/LF/CRLF) and FHIR round trips;
ids, subject and time come from the message headers; every bad input is a clear DecodeError."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from cmrx.config import get_settings
from consumer.codecs import (
    CONTENT_TYPE_FHIR,
    CONTENT_TYPE_HL7,
    CONTENT_TYPE_TEXT,
    HL7_VARIANTS,
    DecodeError,
    content_id,
    decode_message,
    detect_format,
    encode_fhir,
    encode_hl7,
    hl7_escape,
    hl7_message_control_id,
    hl7_unescape,
    parse_hl7_time,
)
from helpers import DEV_DIR

REPORTS = sorted(DEV_DIR.glob("*.txt"))
WHEN = datetime(2025, 3, 14, 9, 30, tzinfo=timezone(timedelta(hours=-5)))
SEPARATORS = {"CR": "\r", "LF": "\n", "CRLF": "\r\n"}
BASE_MSH = "MSH|^~\\&|RIS|HOSP|CMRX|CMRX|20250314093000||ORU^R01^ORU_R01|CTRL-9|P|2.5.1"


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.rstrip().split("\n")]


def _phi(report: Path) -> list[str]:
    return json.loads(report.with_suffix(".json").read_text())["phi"]


def _small_limit(chars: int):
    settings = get_settings().model_copy(deep=True)
    settings.extraction.max_report_chars = chars
    return settings


def test_dev_set_present():
    assert len(REPORTS) == 12


# ------------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("separator", SEPARATORS.values(), ids=SEPARATORS.keys())
@pytest.mark.parametrize("variant", HL7_VARIANTS)
@pytest.mark.parametrize("report", REPORTS, ids=lambda p: p.stem)
def test_hl7_round_trip(report: Path, variant: str, separator: str):
    text = report.read_text(encoding="utf-8")
    wire = encode_hl7(text, f"ACC-{report.stem}", subject_id=f"PT{report.stem}", effective_time=WHEN, variant=variant, separator=separator, control_id=f"C{report.stem}")
    assert wire.startswith(b"MSH|^~\\&|")
    assert (b"\r" in wire) == ("\r" in separator)
    envelope = decode_message(wire)
    assert envelope.source_format == "hl7v2"
    assert _lines(envelope.text) == _lines(text)
    assert envelope.report_id == f"ACC-{report.stem}"
    assert envelope.subject_reference == f"Patient/PT{report.stem}"
    assert envelope.effective_time == WHEN
    assert f"ACC-{report.stem}" not in envelope.text and "MSH" not in envelope.text  # ids are metadata only


@pytest.mark.parametrize("report", REPORTS, ids=lambda p: p.stem)
def test_fhir_round_trip(report: Path):
    text = report.read_text(encoding="utf-8")
    wire = encode_fhir(text, f"ACC-{report.stem}", subject_reference=f"Patient/pt-{report.stem}", effective_time=WHEN)
    resource = json.loads(wire)
    assert resource["resourceType"] == "DiagnosticReport" and resource["status"] == "final"
    assert resource["code"]["coding"][0] == {"system": "http://loinc.org", "code": "18748-4", "display": "Diagnostic imaging study"}
    assert resource["presentedForm"][0]["contentType"].startswith("text/plain")
    envelope = decode_message(wire, {"content-type": CONTENT_TYPE_FHIR})
    assert envelope.source_format == "fhir"
    assert envelope.text.rstrip() == text.rstrip()
    assert envelope.report_id == f"ACC-{report.stem}"
    assert envelope.subject_reference == f"Patient/pt-{report.stem}"
    assert envelope.effective_time == WHEN


@pytest.mark.parametrize("report", REPORTS[:3], ids=lambda p: p.stem)
def test_plain_text_ids(report: Path):
    raw = report.read_bytes()
    keyed = decode_message(raw, {"content-type": CONTENT_TYPE_TEXT}, key=b"0001-key")
    assert keyed.source_format == "text" and keyed.report_id == "0001-key"
    assert keyed.text == raw.decode("utf-8")
    unkeyed = decode_message(raw)
    assert unkeyed.report_id == content_id(raw) == decode_message(raw).report_id  # replays keep the id
    assert unkeyed.report_id.startswith("sha256-")


def test_fhir_conclusion_used_without_presented_form():
    resource = {"resourceType": "DiagnosticReport", "id": "dr1", "status": "final", "code": {"text": "CMR"}, "conclusion": "LVEF 55 %"}
    envelope = decode_message(json.dumps(resource).encode())
    assert envelope.text == "LVEF 55 %" and envelope.report_id == "dr1"


# ----------------------------------------------------------------------------- HL7 details


def test_hl7_escapes_and_formatting():
    text = "a|b^c&d~e\\f"
    assert hl7_unescape(hl7_escape(text)) == text
    assert hl7_unescape("x\\.br\\y\\X41\\\\H\\z\\N\\") == "x\nyAz"
    assert hl7_unescape("unknown \\Q\\ kept") == "unknown \\Q\\ kept"


def test_hl7_ids_subject_time_from_segments():
    msg = "\r".join(
        [
            BASE_MSH,
            "PID|1||MRN77^^^HOSP^MR~OTHER^^^X^PI||DOE^JANE",
            "ORC|RE|PL-1|FI-1",
            "OBR|1|PL-1||18748-4^Diagnostic imaging study^LN|||20250314093000+0100",
            "ZDS|1.2.3^RIS^Application^DICOM",
            "OBX|1|TX|18748-4^^LN|1|LVEF 55 %||||||F",
            "OBX|2|NM|10230-1^^LN|1|55|%|||||F",
            "OBX|3|ST|18748-4^^LN|1|RVEF 50 %||||||F",
        ]
    )
    envelope = decode_message(msg.encode())
    assert envelope.text == "LVEF 55 %\nRVEF 50 %"  # NM values are not report text
    assert envelope.report_id == "PL-1"  # OBR-3 empty -> OBR-2
    assert envelope.subject_reference == "Patient/MRN77"
    assert envelope.effective_time == datetime(2025, 3, 14, 9, 30, tzinfo=timezone(timedelta(hours=1)))


def test_hl7_falls_back_to_control_id_and_nte():
    msg = "\n".join([BASE_MSH, "PID|1", "OBR|1", "NTE|1|L|first line", "NTE|2|L|second \\T\\ line"])
    envelope = decode_message(msg.encode(), {"content-type": CONTENT_TYPE_HL7})
    assert envelope.report_id == "CTRL-9"
    assert envelope.text == "first line\nsecond & line"
    assert envelope.subject_reference is None and envelope.effective_time is None


def test_hl7_tolerates_raw_line_breaks_unknown_segments_and_versions():
    msg = "\r\n".join([BASE_MSH.replace("2.5.1", "9.9"), "ABC|1", "OBR|1||F-7", "OBX|1|FT|||one\\.br\\two||||||F"])
    envelope = decode_message(msg.encode())
    assert envelope.text == "one\ntwo" and envelope.report_id == "F-7"
    # CR-separated message whose sender put raw LFs inside OBX-5: they stay line breaks of the text
    raw_lf = "\r".join([BASE_MSH, "OBR|1||F-8", "OBX|1|TX|||line 1\nline 2||||||F"])
    assert decode_message(raw_lf.encode()).text == "line 1\nline 2"


def test_hl7_latin1_declared_in_msh18():
    msg = (BASE_MSH + "||||||8859/1\rOBR|1||F-9\rOBX|1|TX|||m\xb2 \xe9||||||F").encode("latin-1")
    assert decode_message(msg).text == "m² é"


def test_hl7_time_parsing():
    assert parse_hl7_time("2025") == datetime(2025, 1, 1)
    assert parse_hl7_time("202503141230") == datetime(2025, 3, 14, 12, 30)
    assert parse_hl7_time("20250314123045.12-0500") == datetime(2025, 3, 14, 12, 30, 45, 120000, tzinfo=timezone(timedelta(hours=-5)))
    assert parse_hl7_time("yesterday") is None and parse_hl7_time("20251399") is None


def test_control_id_of_broken_messages():
    assert hl7_message_control_id(BASE_MSH + "\rgarbage") == "CTRL-9"
    assert hl7_message_control_id(b"MSH|^~\\&|A") == ""
    assert hl7_message_control_id(b"not hl7") == ""


def test_format_detection():
    assert detect_format("MSH|^~\\&|x") == "hl7v2"
    assert detect_format('{"resourceType": "DiagnosticReport"}') == "fhir"
    assert detect_format('{"not": "fhir"}') == "text"
    assert detect_format("CARDIAC MRI REPORT") == "text"
    assert detect_format("MSH|^~\\&|x", {"content-type": "text/plain"}) == "text"  # a named type wins
    assert detect_format("anything", [("Content-Type", b"application/fhir+json; fhirVersion=4.0")]) == "fhir"


# ------------------------------------------------------------------------------------------ errors


def _error(value, headers=None, **kwargs) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        decode_message(value, headers, **kwargs)
    return info.value


def test_error_empty():
    assert _error(b"").code == "empty" and "empty" in _error(b"").reason
    assert "whitespace" in _error(b" \r\n\t ").reason


def test_error_binary_reports_offset():
    assert _error(b"LVEF\x0055").reason == "binary content: NUL byte at offset 4"
    err = _error(b"CMR report \xff\xfe tail")
    assert err.code == "binary" and "not valid UTF-8" in err.reason and "offset 11" in err.reason
    assert "offset 0" in _error(b"\x89PNG\r\n\x1a\n....").reason


@pytest.mark.parametrize(
    "message, fragment",
    [
        ("MSH|^~\\&|RIS", "MSH-9"),
        (BASE_MSH, "only an MSH"),
        (BASE_MSH + "\rPID|1||123\rOBR|1||F1", "no report text"),
        (BASE_MSH + "\rOBX|1|NM|x||55||||||F", "no report text"),
        ("MSH|^^\\&|dup", "MSH segment"),
        ("PID|1||123\rOBX|1|TX|||text", "does not start with an MSH"),
        ("MSH|^~\\&|A|B|||2025||ADT^A01|C|P|2.5\rPID|1||123", "unsupported HL7 v2 message type ADT^A01"),
    ],
    ids=["truncated", "msh-only", "no-obx", "numeric-only", "bad-encoding-chars", "no-msh", "adt"],
)
def test_error_invalid_hl7(message: str, fragment: str):
    err = _error(message.encode(), {"content-type": CONTENT_TYPE_HL7})
    assert fragment in err.reason


def test_error_hl7_header_on_plain_text():
    err = _error(b"CARDIAC MRI REPORT\nLVEF 55%", {"content-type": CONTENT_TYPE_HL7})
    assert err.code == "hl7" and "MSH" in err.reason


def test_error_invalid_fhir_json():
    err = _error(b'{"resourceType": "DiagnosticReport", ', {"content-type": CONTENT_TYPE_FHIR})
    assert err.code == "fhir" and "invalid FHIR JSON at line 1" in err.reason
    assert "not a resource object" in _error(b"[1, 2]", {"content-type": CONTENT_TYPE_FHIR}).reason


def test_error_invalid_fhir_without_values():
    phi = _phi(REPORTS[0])
    resource = {
        "resourceType": "DiagnosticReport",
        "status": "final",
        "code": {"text": "CMR"},
        "effectiveDateTime": phi[0],  # a name where a date belongs
        "patientName": phi[1],
        "presentedForm": [{"contentType": "text/plain", "data": "%%%" + phi[2]}],
    }
    err = _error(json.dumps(resource).encode())
    assert err.code == "fhir" and err.reason.startswith("invalid FHIR DiagnosticReport: ")
    assert "effectiveDateTime" in err.reason and "patientName" in err.reason and "presentedForm.0.data" in err.reason
    assert not any(value in err.reason for value in phi)


def test_error_wrong_resource_type():
    err = _error(json.dumps({"resourceType": "Observation", "status": "final", "code": {"text": "x"}}).encode())
    assert err.code == "fhir-type" and "Observation" in err.reason and "DiagnosticReport" in err.reason
    err = _error(json.dumps({"resourceType": "IWASAKI, SAMUEL"}).encode(), {"content-type": CONTENT_TYPE_FHIR})
    assert "IWASAKI" not in err.reason


def test_error_fhir_without_text():
    resource = {"resourceType": "DiagnosticReport", "status": "final", "code": {"text": "CMR"}, "presentedForm": [{"contentType": "application/pdf", "data": base64.b64encode(b"%PDF").decode()}]}
    assert _error(json.dumps(resource).encode()).code == "no-text"


def test_error_oversize_uses_settings_limit():
    text = REPORTS[0].read_text(encoding="utf-8")
    settings = _small_limit(500)
    for wire in (text.encode(), encode_hl7(text, "A1"), encode_fhir(text, "A1")):
        err = _error(wire, settings=settings)
        assert err.code == "oversize" and "max_report_chars=500" in err.reason
    assert decode_message(text.encode(), settings=_small_limit(len(text))).text == text
    huge = _error(b"x" * (8 * 500 + 65537), settings=settings)
    assert huge.code == "oversize" and "bytes" in huge.reason


@pytest.mark.parametrize("report", REPORTS, ids=lambda p: p.stem)
def test_error_reasons_never_quote_report_content(report: Path):
    """Broken versions of real reports: the reasons name places, never content or PHI."""
    text = report.read_text(encoding="utf-8")
    phi = _phi(report)
    broken = [
        text.encode() + b"\x00",
        text.encode()[:40] + b"\xc3",
        ("MSH|^~\\&|RIS\r" + text).encode(),
        b'{"resourceType": "DiagnosticReport", "conclusion": ' + json.dumps(text).encode(),
        json.dumps({"resourceType": "DiagnosticReport", "status": "final", "code": {"text": text}, "issued": phi[0]}).encode(),
    ]
    for wire in broken:
        reason = _error(wire, settings=_small_limit(1_000_000)).reason
        assert not any(value in reason for value in phi), reason
        assert text.splitlines()[0] not in reason
