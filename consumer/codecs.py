"""Kafka message bytes <-> ``ReportEnvelope``: HL7 v2 ORU^R01 (hl7apy), FHIR R4 DiagnosticReport
(fhir.resources R4B models) and plain UTF-8 text.

Why one module for both directions: the consumer, the producer, the MLLP bridge and the tests must
agree byte for byte on how report text is wrapped and unwrapped. Identifiers (MSH-10, OBR-3, PID-3,
DiagnosticReport.identifier ...) are read into envelope metadata and never into the text.

Every failure is a ``DecodeError`` whose ``reason`` names what is wrong and where (segment, field,
byte offset) but never quotes message content, so it is safe to log and to dead-letter.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from dataclasses import field as _dataclass_field
from functools import lru_cache
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Iterable, Literal, Mapping

from schemas.catalog import CATALOG
from schemas.messages import ReportEnvelope

if TYPE_CHECKING:  # pragma: no cover
    from cmrx.config import Settings

CONTENT_TYPE_TEXT = "text/plain; charset=utf-8"
CONTENT_TYPE_HL7 = "x-application/hl7-v2+er7"
CONTENT_TYPE_FHIR = "application/fhir+json"
CONTENT_TYPES = {"text": CONTENT_TYPE_TEXT, "hl7v2": CONTENT_TYPE_HL7, "fhir": CONTENT_TYPE_FHIR}

Format = Literal["hl7v2", "fhir", "text"]
HL7Variant = Literal["lines", "br", "nte"]
HL7_VARIANTS: tuple[str, ...] = ("lines", "br", "nte")

# A report is a diagnostic imaging study document: LOINC 18748-4 "Diagnostic imaging study" is in the
# LOINC Imaging Document Codes value set; the text says which study it is.
REPORT_CODE = ("http://loinc.org", "18748-4", "Diagnostic imaging study")
REPORT_TEXT = "Cardiac MRI report"
PROJECT_URL = CATALOG.code_system.split("/CodeSystem/")[0]  # e.g. https://cmrx.dev/fhir
REPORT_IDENTIFIER_SYSTEM = f"{PROJECT_URL}/report"
HL7_VERSION = "2.5.1"
HL7_TEXT_TYPES = {"TX", "FT", "ST"}
HL7_TEXT_SEGMENTS = {"OBX", "NTE"}  # read raw, not through hl7apy (see _Segment)
HL7_REPORT_TYPES = {"ORU", "MDM"}  # results and medical documents carry report text

_MSH_RE = re.compile(r"^MSH[^A-Za-z0-9\s]")
_TS_RE = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,4}))?([+-]\d{4})?$")
_SAFE_TOKEN_RE = re.compile(r"^[A-Za-z0-9_.^-]{1,40}$")


class DecodeError(ValueError):
    """A message that cannot become a ReportEnvelope. ``reason`` is PHI-free (safe to log and to put
    in a DeadLetter); ``code`` is a short machine-readable class of the failure."""

    def __init__(self, reason: str, code: str = "invalid") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


# ---------------------------------------------------------------------------------------- decoding


def decode_message(
    value: bytes | str | None,
    headers: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
    key: bytes | str | None = None,
    *,
    settings: Settings | None = None,
    fmt: Format | None = None,
) -> ReportEnvelope:
    """Decode one Kafka message into a ReportEnvelope.

    The format is ``fmt`` if given, else the ``content-type`` header when it names a known format,
    else sniffed from the content (``MSH`` -> HL7 v2, a JSON object with ``resourceType`` -> FHIR,
    anything else -> plain text). ``key`` is the report id of plain text (else a content hash) and
    the last-resort id of HL7/FHIR messages that carry none.
    """
    limit = _max_chars(settings)
    raw = value.encode("utf-8") if isinstance(value, str) else (value or b"")
    if not raw:
        raise DecodeError("empty message", "empty")
    if len(raw) > _raw_byte_limit(limit):
        raise DecodeError(f"message is {len(raw)} bytes, over the {_raw_byte_limit(limit)}-byte limit for max_report_chars={limit}", "oversize")
    text = _to_text(raw)
    if not text.strip():
        raise DecodeError("message contains only whitespace", "empty")
    key_text = _key_text(key)
    fmt = fmt or detect_format(text, headers)
    if fmt == "hl7v2":
        envelope = _decode_hl7(text, key_text)
    elif fmt == "fhir":
        envelope = _decode_fhir(text, key_text)
    else:
        envelope = ReportEnvelope(source_format="text", report_id=key_text or content_id(raw), text=_normalize_newlines(text))
    if not envelope.text.strip():
        raise DecodeError(f"no report text found in the {fmt} message", "no-text")
    if len(envelope.text) > limit:
        raise DecodeError(f"report text is {len(envelope.text)} characters, over max_report_chars={limit}", "oversize")
    return envelope


def detect_format(text: str, headers: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None) -> Format:
    """The header decides when it names a known content type; otherwise the content does."""
    declared = format_from_content_type(header_value(headers, "content-type"))
    if declared:
        return declared
    head = text.lstrip("\ufeff\x0b \t\r\n")
    if _MSH_RE.match(head):
        return "hl7v2"
    if head.startswith("{"):
        try:
            data = json.loads(head)
        except ValueError:  # broken JSON that names a resource type is broken FHIR, not a report
            return "fhir" if '"resourceType"' in head[:4096] else "text"
        if isinstance(data, dict) and "resourceType" in data:
            return "fhir"
    return "text"


def format_from_content_type(content_type: str | None) -> Format | None:
    """Map a MIME type (parameters ignored) to a format; None when absent or unknown."""
    if not content_type:
        return None
    mime = content_type.split(";", 1)[0].strip().lower()
    if "hl7-v2" in mime or mime in {"application/hl7v2", "application/edi-hl7", "x-application/hl7"}:
        return "hl7v2"
    if "fhir" in mime or mime == "application/json":
        return "fhir"
    if mime == "text/plain":
        return "text"
    return None


def header_value(headers: Mapping[str, Any] | Iterable[tuple[str, Any]] | None, name: str) -> str | None:
    """A header by case-insensitive name from a dict or confluent-kafka's list of (key, bytes)."""
    if not headers:
        return None
    items = headers.items() if isinstance(headers, Mapping) else headers
    for k, v in items:
        if k.lower() == name.lower() and v is not None:
            return v.decode("utf-8", "replace") if isinstance(v, (bytes, bytearray)) else str(v)
    return None


def content_id(raw: bytes | str) -> str:
    """Stable report id for content without one, so a replayed message gets the same id."""
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    return "sha256-" + hashlib.sha256(data).hexdigest()[:24]


def _max_chars(settings: Settings | None) -> int:
    if settings is None:
        from cmrx.config import get_settings

        settings = get_settings()
    return settings.extraction.max_report_chars


def _raw_byte_limit(limit: int) -> int:
    """Refuse to even parse messages far bigger than any allowed report could be (UTF-8 and
    base64/escape overhead included); the exact check is on the decoded text."""
    return 8 * limit + 65536


def _to_text(raw: bytes) -> str:
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise DecodeError(f"binary content: NUL byte at offset {nul}", "binary")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        if _declares_latin1(raw):
            return raw.decode("latin-1")
        raise DecodeError(f"not valid UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start} ({exc.reason})", "binary") from None


def _declares_latin1(raw: bytes) -> bool:
    """HL7 messages may declare ISO 8859-1 in MSH-18; honour it instead of rejecting the bytes."""
    head = raw.lstrip(b"\x0b \t\r\n")
    if not head.startswith(b"MSH") or len(head) < 4:
        return False
    msh = re.split(rb"[\r\n]", head, maxsplit=1)[0]
    fields = msh.split(head[3:4])
    return len(fields) > 17 and fields[17].strip().upper() in {b"8859/1", b"ISO-8859-1", b"ISO_IR 100"}


def _key_text(key: bytes | str | None) -> str | None:
    if key is None:
        return None
    text = key.decode("utf-8", "replace") if isinstance(key, (bytes, bytearray)) else str(key)
    return _clean_id(text)


def _clean_id(text: str | None) -> str | None:
    """An identifier fit for metadata: trimmed, one line, at most 128 characters."""
    if text is None:
        return None
    text = text.strip()
    if not text or len(text) > 128 or any(ord(c) < 32 for c in text):
        return None
    return text


def _normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _safe_token(value: Any) -> str:
    """Echo short code-like tokens (message types, resource types) in reasons; hide anything else."""
    text = str(value)
    return text if _SAFE_TOKEN_RE.match(text) else "(not shown)"


# ------------------------------------------------------------------------------------------- HL7 v2


@dataclass(frozen=True)
class Encoding:
    """The delimiters of one HL7 v2 message (MSH-1 and MSH-2)."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"


DEFAULT_ENCODING = Encoding()


def hl7_escape(text: str, enc: Encoding = DEFAULT_ENCODING) -> str:
    """Escape delimiters for an HL7 v2 text field; the escape character goes first."""
    e = enc.escape
    text = text.replace(e, f"{e}E{e}")
    for char, code in ((enc.field, "F"), (enc.component, "S"), (enc.subcomponent, "T"), (enc.repetition, "R")):
        text = text.replace(char, f"{e}{code}{e}")
    return text


def hl7_unescape(value: str, enc: Encoding = DEFAULT_ENCODING) -> str:
    """Undo HL7 escapes: delimiters (F S T R E), line breaks (.br, .sp), hex (Xhh..); highlighting,
    other formatting and charset switches are dropped; unknown sequences are kept as written."""
    e = enc.escape
    if e not in value:
        return value
    simple = {"F": enc.field, "S": enc.component, "T": enc.subcomponent, "R": enc.repetition, "E": e, "H": "", "N": ""}

    def replace(match: re.Match[str]) -> str:
        seq = match.group(1)
        if seq in simple:
            return simple[seq]
        if seq == ".br":
            return "\n"
        command, _, number = seq.partition(" ") if " " in seq else (seq[:3], "", seq[3:])
        if command == ".sp":
            return "\n" * (1 + (int(number) if number.strip().isdigit() else 1))
        if command == ".sk":
            return " " * (int(number) if number.strip().isdigit() else 1)
        if command in {".in", ".ti", ".ce", ".fi", ".nf"}:
            return ""
        if seq.startswith("X") and len(seq) > 1:
            try:
                return bytes.fromhex(seq[1:]).decode("utf-8", "replace")
            except ValueError:
                return match.group(0)
        if seq[:1] in {"C", "M", "Z"}:
            return ""
        return match.group(0)

    pattern = re.escape(e) + "([^" + re.escape(e) + "\r\n]*)" + re.escape(e)
    return re.sub(pattern, replace, value)


@dataclass(slots=True)
class _Segment:
    """One segment: its raw text, its delimiters, and whether hl7apy knows it in this version.

    Fields are read from the raw text, split on the delimiters hl7apy read from MSH, then
    unescaped. hl7apy's full segment parse costs 3-12 ms a segment (the MSH alone was most of the
    decoding time of a message) and re-escapes sequences it does not know (``\\.br\\`` becomes
    ``\\E\\.br\\E\\``), while a report sent one OBX per line has 50-100 segments."""

    name: str
    raw: str
    known: bool  # a segment of the message's HL7 version (hl7apy's reference); unknown ones are ignored
    encoding: Encoding = DEFAULT_ENCODING
    _split: tuple[str, list[str]] | None = _dataclass_field(default=None, repr=False, compare=False)  # (separator, fields)

    def raw_field(self, number: int, field_sep: str) -> str:
        split = self._split
        if split is None or split[0] != field_sep:  # each segment is split once, not once per field read
            split = self._split = (field_sep, self.raw.split(field_sep))
        parts = split[1]
        index = number - 1 if self.name == "MSH" else number
        return parts[index] if 0 <= index < len(parts) else ""

    def field(self, number: int, component: int = 1) -> str:
        """Unescaped component of the first repetition of a field ('' when absent)."""
        enc = self.encoding
        first = self.raw_field(number, enc.field).split(enc.repetition)[0]
        parts = first.split(enc.component)
        return hl7_unescape(parts[component - 1], enc).strip() if component <= len(parts) else ""


def _encoding_of(element: Any) -> Encoding:
    chars = element.encoding_chars
    return Encoding(chars["FIELD"], chars["COMPONENT"], chars["REPETITION"], chars["ESCAPE"], chars["SUBCOMPONENT"])


def split_segments(text: str) -> list[str]:
    """Segments of an ER7 message separated by CR, LF or CRLF. When the message uses CR, a bare LF
    stays inside its segment; a line that does not start like a segment continues the previous one
    (senders that put raw line breaks in OBX-5)."""
    text = text.lstrip("\ufeff\x0b \t\r\n").rstrip("\x1c\r\n \t")
    lines = text.replace("\r\n", "\r").split("\r") if "\r" in text else text.split("\n")
    field_sep = re.escape(text[3]) if _MSH_RE.match(text) else r"\|"
    segment_start = re.compile(r"^[A-Za-z][A-Za-z0-9]{2}(?:" + field_sep + "|$)")
    segments: list[str] = []
    for line in lines:
        if not line.strip():
            continue
        if segments and not segment_start.match(line):
            segments[-1] += "\n" + line
        else:
            segments.append(line)
    return segments


def parse_hl7(text: str) -> tuple[list[_Segment], Encoding]:
    """Split into segments; hl7apy reads and checks the MSH (delimiters, message type, version),
    and says which segment names its reference of that version knows: a segment it would not parse
    (an unknown name) is kept but never read for ids or times. Z-segments are known to hl7apy as
    generic segments. Fields are read raw (see _Segment). An unsupported version counts as 2.5.1."""
    from hl7apy import SUPPORTED_LIBRARIES
    from hl7apy.exceptions import HL7apyException
    from hl7apy.parser import get_message_info

    raws = split_segments(text)
    if not raws or not _MSH_RE.match(raws[0]):
        raise DecodeError("invalid HL7 v2: the message does not start with an MSH segment", "hl7")
    try:
        encoding_chars, _structure, version = get_message_info(raws[0])
    except HL7apyException as exc:
        raise DecodeError(f"invalid HL7 v2 MSH segment: {type(exc).__name__}", "hl7") from None
    version = version if version in SUPPORTED_LIBRARIES else HL7_VERSION
    chars = encoding_chars
    enc = Encoding(chars["FIELD"], chars["COMPONENT"], chars["REPETITION"], chars["ESCAPE"], chars["SUBCOMPONENT"])
    segments = []
    for raw in raws:
        name = raw[:3].upper()
        if not raw.startswith(name):
            raw = name + raw[3:]
        segments.append(_Segment(name, raw, _known_segment(name, version), enc))
    return segments, enc


@lru_cache(maxsize=512)
def _known_segment(name: str, version: str) -> bool:
    """Would hl7apy parse a segment of this name in this version? Asked of hl7apy's own parser
    (tolerant) once per name and version: it accepts the names of its reference and Z-segments."""
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.parser import parse_segment

    try:
        parse_segment(name, version, None, VALIDATION_LEVEL.TOLERANT)
    except Exception:  # noqa: BLE001 - HL7apyException, or hl7apy failing on some references (QRD in 2.7)
        return False
    return True


def _decode_hl7(text: str, key: str | None) -> ReportEnvelope:
    segments, enc = parse_hl7(text)
    msh = segments[0]
    message_type = msh.raw_field(9, enc.field)
    if not message_type.strip():
        raise DecodeError("invalid HL7 v2: MSH-9 message type is missing (truncated message?)", "hl7")
    kind = message_type.split(enc.component)[0].strip().upper()
    if kind not in HL7_REPORT_TYPES:
        raise DecodeError(f"unsupported HL7 v2 message type {_safe_token(message_type)} (expected ORU^R01)", "hl7-type")
    if len(segments) == 1:
        raise DecodeError("invalid HL7 v2: only an MSH segment (truncated message?)", "hl7")
    text_out = _hl7_report_text(segments, enc)
    if not text_out.strip():
        raise DecodeError("no report text in the HL7 v2 message (no OBX of type TX/FT/ST and no NTE with text)", "no-text")
    return ReportEnvelope(
        source_format="hl7v2",
        report_id=_hl7_report_id(segments) or key or content_id(text),
        subject_reference=_hl7_subject(segments),
        effective_time=_hl7_effective_time(segments),
        text=text_out,
    )


def _hl7_report_text(segments: list[_Segment], enc: Encoding) -> str:
    """OBX text lines (TX/FT/ST, one OBX per line or one OBX with escaped breaks), else NTE lines."""
    obx_lines: list[str] = []
    nte_lines: list[str] = []
    for seg in segments:
        if seg.name == "OBX" and seg.raw_field(2, enc.field).split(enc.component)[0].strip().upper() in HL7_TEXT_TYPES:
            obx_lines.append(_hl7_text_field(seg.raw_field(5, enc.field), enc))
        elif seg.name == "NTE":
            nte_lines.append(_hl7_text_field(seg.raw_field(3, enc.field), enc))
    lines = obx_lines if any(line.strip() for line in obx_lines) else nte_lines
    return _normalize_newlines("\n".join(lines))


def _hl7_text_field(raw: str, enc: Encoding) -> str:
    """A text field's repetitions are lines; escapes are undone after splitting on delimiters."""
    if enc.repetition not in raw and enc.escape not in raw:
        return raw
    return "\n".join(hl7_unescape(rep, enc) for rep in raw.split(enc.repetition))


def _first_segment(segments: list[_Segment], name: str) -> _Segment | None:
    return next((s for s in segments if s.name == name and s.known), None)


def _hl7_report_id(segments: list[_Segment]) -> str | None:
    """Filler order number (OBR-3), placer (OBR-2), ORC-3/ORC-2, accession-style OBR-18..20,
    the MDM document number (TXA-12), then the message control id (MSH-10)."""
    candidates = [("OBR", 3), ("OBR", 2), ("ORC", 3), ("ORC", 2), ("OBR", 18), ("OBR", 20), ("OBR", 19), ("TXA", 12), ("MSH", 10)]
    for name, number in candidates:
        seg = _first_segment(segments, name)
        if seg is not None:
            found = _clean_id(seg.field(number))
            if found:
                return found
    return None


def _hl7_subject(segments: list[_Segment]) -> str | None:
    pid = _first_segment(segments, "PID")
    patient = _clean_id(pid.field(3)) if pid else None
    return f"Patient/{patient}" if patient else None


def _hl7_effective_time(segments: list[_Segment]) -> datetime | None:
    """OBR-7 observation time (TXA-4 for MDM); an unreadable time is ignored, not fatal."""
    for name, number in (("OBR", 7), ("TXA", 4)):
        seg = _first_segment(segments, name)
        if seg is not None:
            found = parse_hl7_time(seg.field(number))
            if found:
                return found
    return None


def parse_hl7_time(value: str) -> datetime | None:
    """HL7 TS/DTM (YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]); naive when the message gives no offset."""
    match = _TS_RE.match(value.strip())
    if not match:
        return None
    y, mo, d, h, mi, s, frac, offset = match.groups()
    try:
        tz = None
        if offset:
            sign = 1 if offset[0] == "+" else -1
            tz = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5])))
        micro = int((frac or "0").ljust(6, "0")[:6])
        return datetime(int(y), int(mo or 1), int(d or 1), int(h or 0), int(mi or 0), int(s or 0), micro, tzinfo=tz)
    except ValueError:
        return None


def hl7_header(message: bytes | str) -> dict[int, list[str]]:
    """MSH fields of a possibly broken message, read without hl7apy (an ACK must echo MSH-10 even
    when the message cannot be decoded): {field number: components of the first repetition,
    unescaped}; {} when the message does not start with MSH."""
    text = message.decode("utf-8", "replace") if isinstance(message, (bytes, bytearray)) else message
    head = text.lstrip("\ufeff\x0b \t\r\n")
    if not _MSH_RE.match(head):
        return {}
    msh = re.split(r"[\r\n]", head, maxsplit=1)[0]
    fields = msh.split(msh[3])
    seps = fields[1] if len(fields) > 1 else ""
    enc = Encoding(
        field=msh[3],
        component=seps[0] if len(seps) > 0 else "^",
        repetition=seps[1] if len(seps) > 1 else "~",
        escape=seps[2] if len(seps) > 2 else "\\",
        subcomponent=seps[3] if len(seps) > 3 else "&",
    )
    out = {1: [enc.field], 2: [seps]}
    for number in range(3, len(fields) + 1):
        components = fields[number - 1].split(enc.repetition)[0].split(enc.component)
        out[number] = [hl7_unescape(c, enc).strip() for c in components]
    return out


def hl7_message_control_id(message: bytes | str) -> str:
    """MSH-10 of a possibly broken message; '' when there is none."""
    return _clean_id(hl7_header(message).get(10, [""])[0]) or ""


# ---------------------------------------------------------------------------------------------- FHIR


def _decode_fhir(text: str, key: str | None) -> ReportEnvelope:
    from fhir.resources.R4B.diagnosticreport import DiagnosticReport
    from pydantic import ValidationError

    try:
        data = json.loads(text)
    except ValueError as exc:
        msg = getattr(exc, "msg", "not JSON")
        where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise DecodeError(f"invalid FHIR JSON{where}: {msg}", "fhir") from None
    if not isinstance(data, dict):
        raise DecodeError(f"invalid FHIR JSON: top level is a {type(data).__name__}, not a resource object", "fhir")
    resource_type = data.get("resourceType")
    if resource_type != "DiagnosticReport":
        shown = _safe_token(resource_type) if resource_type is not None else "none"
        raise DecodeError(f"wrong FHIR resourceType {shown}: expected DiagnosticReport", "fhir-type")
    try:
        report = DiagnosticReport.model_validate(data)
    except ValidationError as exc:
        raise DecodeError(f"invalid FHIR DiagnosticReport: {validation_summary(exc)}", "fhir") from None
    text_out = _fhir_report_text(report)
    if text_out is None:
        raise DecodeError("no report text in the FHIR DiagnosticReport (no text/plain presentedForm with data and no conclusion)", "no-text")
    report_id = None
    if report.identifier:
        report_id = _clean_id(next((i.value for i in report.identifier if i.value), None))
    report_id = report_id or _clean_id(report.id) or key or content_id(text)
    subject = report.subject.reference if report.subject is not None and report.subject.reference else None
    return ReportEnvelope(
        source_format="fhir",
        report_id=report_id,
        subject_reference=subject,
        effective_time=_fhir_time(report.effectiveDateTime or (report.effectivePeriod.start if report.effectivePeriod else None)),
        text=_normalize_newlines(text_out),
    )


def validation_summary(exc: Any, limit: int = 5) -> str:
    """'N error(s): loc: message; ...' without input values (a message quoting its input falls
    back to the error type)."""
    errors = exc.errors(include_url=False)
    parts = []
    for err in errors[:limit]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(resource)"
        msg = str(err.get("msg", ""))
        value = err.get("input")
        if isinstance(value, (str, int, float)) and str(value) and str(value) in msg:
            msg = str(err.get("type", "invalid"))
        parts.append(f"{loc[:80]}: {msg[:160]}")
    more = f"; and {len(errors) - limit} more" if len(errors) > limit else ""
    return f"{len(errors)} validation error(s): " + "; ".join(parts) + more


def _fhir_report_text(report: Any) -> str | None:
    for form in report.presentedForm or []:
        content_type = (form.contentType or "").lower()
        if content_type.split(";")[0].strip() != "text/plain" or form.data is None:
            continue
        charset = "utf-8"
        match = re.search(r"charset\s*=\s*\"?([\w.-]+)", content_type)
        if match:
            charset = match.group(1)
        data = form.data if isinstance(form.data, bytes) else base64.b64decode(form.data)
        try:
            return data.decode(charset)
        except (UnicodeDecodeError, LookupError) as exc:
            offset = exc.start if isinstance(exc, UnicodeDecodeError) else 0
            raise DecodeError(f"presentedForm text is not valid {_safe_token(charset)}: offset {offset} of the decoded data", "binary") from None
    if report.conclusion and report.conclusion.strip():
        return report.conclusion
    return None


def _fhir_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


# ---------------------------------------------------------------------------------------- encoding


def encode(text: str, fmt: Format, report_id: str, **kwargs: Any) -> bytes:
    """Wrap report text in the given format (for the producer and tests)."""
    if fmt == "hl7v2":
        return encode_hl7(text, report_id, **kwargs)
    if fmt == "fhir":
        return encode_fhir(text, report_id, **kwargs)
    return encode_text(text)


def encode_text(text: str) -> bytes:
    return _normalize_newlines(text).encode("utf-8")


def _hl7_ts(value: datetime) -> str:
    stamp = value.strftime("%Y%m%d%H%M%S")
    return stamp + value.strftime("%z") if value.tzinfo else stamp


def encode_hl7(
    text: str,
    report_id: str,
    *,
    subject_id: str | None = None,
    effective_time: datetime | None = None,
    variant: HL7Variant = "lines",
    separator: str = "\r",
    control_id: str | None = None,
    sending_application: str = "CMRX",
) -> bytes:
    """An HL7 v2.5.1 ORU^R01 built with hl7apy carrying the report text as one OBX (TX) per line
    (``lines``), one OBX (FT) with ``\\.br\\`` line breaks (``br``) or NTE segments (``nte``).
    ``separator`` is the segment separator (CR per the standard; LF or CRLF for sloppy senders)."""
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.core import Message

    if variant not in HL7_VARIANTS:
        raise ValueError(f"unknown HL7 variant {variant!r}; expected one of {HL7_VARIANTS}")
    lines = _normalize_newlines(text).split("\n")
    now = effective_time or datetime.now(timezone.utc)
    msg = Message("ORU_R01", version=HL7_VERSION, validation_level=VALIDATION_LEVEL.TOLERANT)
    msg.msh.msh_3 = hl7_escape(sending_application)
    msg.msh.msh_4 = hl7_escape(sending_application)
    msg.msh.msh_5 = "CMRX"
    msg.msh.msh_7 = _hl7_ts(now)
    msg.msh.msh_9 = "ORU^R01^ORU_R01"
    msg.msh.msh_10 = hl7_escape(control_id or uuid.uuid4().hex[:20])
    msg.msh.msh_11 = "P"
    msg.msh.msh_12 = HL7_VERSION
    msg.msh.msh_18 = "UNICODE UTF-8"
    segments = [msg.to_er7()]
    segments.append(_render_segment("PID", pid_1="1", **({"pid_3": f"{hl7_escape(subject_id)}^^^CMRX^MR"} if subject_id else {})))
    code = f"{REPORT_CODE[1]}^{REPORT_CODE[2]}^LN"
    obr = {"obr_1": "1", "obr_2": hl7_escape(report_id), "obr_3": hl7_escape(report_id), "obr_4": code, "obr_25": "F"}
    if effective_time:
        obr["obr_7"] = _hl7_ts(effective_time)
    segments.append(_render_segment("OBR", **obr))
    # Text segments are built once by hl7apy as a template with placeholders and filled per line:
    # hl7apy re-escapes \.br\ (to \E\.br\E\) and takes ~5 ms per segment (see _Segment).
    set_id, body = f"CMRXSETID{uuid.uuid4().hex}", f"CMRXBODY{uuid.uuid4().hex}"
    if variant == "nte":
        template = _render_segment("NTE", nte_1=set_id, nte_2="L", nte_3=body)
        rows = [(str(n), hl7_escape(line)) for n, line in enumerate(lines, start=1)]
    else:
        value_type = "TX" if variant == "lines" else "FT"
        template = _render_segment("OBX", obx_1=set_id, obx_2=value_type, obx_3=code, obx_4="1", obx_5=body, obx_11="F")
        if variant == "lines":
            rows = [(str(n), hl7_escape(line)) for n, line in enumerate(lines, start=1)]
        else:
            rows = [("1", "\\.br\\".join(hl7_escape(line) for line in lines))]
    segments += [template.replace(set_id, number).replace(body, value) for number, value in rows]
    return (separator.join(segments) + separator).encode("utf-8")


def _render_segment(name: str, **fields: str) -> str:
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.core import Segment

    seg = Segment(name, version=HL7_VERSION, validation_level=VALIDATION_LEVEL.TOLERANT)
    for field_name, value in fields.items():
        setattr(seg, field_name, value)
    return seg.to_er7()


def encode_fhir(
    text: str,
    report_id: str,
    *,
    subject_reference: str | None = None,
    effective_time: datetime | None = None,
) -> bytes:
    """A FHIR R4 DiagnosticReport (fhir.resources R4B models): status final, LOINC 18748-4 with text
    'Cardiac MRI report', the text as a text/plain presentedForm (base64), the id as identifier."""
    from fhir.resources.R4B.attachment import Attachment
    from fhir.resources.R4B.codeableconcept import CodeableConcept
    from fhir.resources.R4B.coding import Coding
    from fhir.resources.R4B.diagnosticreport import DiagnosticReport
    from fhir.resources.R4B.identifier import Identifier
    from fhir.resources.R4B.reference import Reference

    report = DiagnosticReport(
        identifier=[Identifier(system=REPORT_IDENTIFIER_SYSTEM, value=report_id)],
        status="final",
        category=[
            CodeableConcept(coding=[Coding(system="http://terminology.hl7.org/CodeSystem/v2-0074", code="RAD", display="Radiology")])
        ],
        code=CodeableConcept(coding=[Coding(system=REPORT_CODE[0], code=REPORT_CODE[1], display=REPORT_CODE[2])], text=REPORT_TEXT),
        subject=Reference(reference=subject_reference) if subject_reference else None,
        effectiveDateTime=effective_time,
        presentedForm=[
            Attachment(contentType=CONTENT_TYPE_TEXT, data=base64.b64encode(_normalize_newlines(text).encode("utf-8")), title=REPORT_TEXT)
        ],
    )
    return report.model_dump_json(exclude_none=True).encode("utf-8")


__all__ = [
    "CONTENT_TYPES",
    "CONTENT_TYPE_FHIR",
    "CONTENT_TYPE_HL7",
    "CONTENT_TYPE_TEXT",
    "DecodeError",
    "Encoding",
    "HL7_VARIANTS",
    "content_id",
    "decode_message",
    "detect_format",
    "encode",
    "encode_fhir",
    "encode_hl7",
    "encode_text",
    "format_from_content_type",
    "header_value",
    "hl7_escape",
    "hl7_header",
    "hl7_message_control_id",
    "hl7_unescape",
    "parse_hl7",
    "parse_hl7_time",
    "validation_summary",
]
