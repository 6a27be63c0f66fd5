"""``cmrx mllp``: an MLLP listener that puts HL7 v2 messages on the reports topic and ACKs after the write.

Why ACK only after Kafka confirmed: the sending interface engine deletes a message once it gets
``AA``, so ``AA`` must mean "durably on the topic". ``AE`` (with the reason in MSA-3 and ERR) means
the message itself is unusable and resending it will not help; ``AR`` means we could not store it
(Kafka unavailable or too slow) and the sender should retry.

Framing: 0x0B <message> 0x1C 0x0D; many messages per connection (answered in order), many
connections at once, frames split across reads, bytes outside frames ignored, and frames larger
than ``max_frame_bytes`` discarded and answered with ``AE``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import threading
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from cmrx.logs import get_logger

if TYPE_CHECKING:  # pragma: no cover
    from cmrx.config import Settings

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"
DEFAULT_MAX_FRAME_BYTES = 4 * 1024 * 1024
DEFAULT_DELIVERY_TIMEOUT_S = 15.0
ACK_VERSION = "2.5.1"
# HL7 table 0357 (message error condition codes) for the ERR segment of AE/AR.
ERROR_CODES = {
    "hl7-type": ("200", "Unsupported message type"),
    "no-text": ("101", "Required field missing"),
    "binary": ("102", "Data type error"),
    "hl7": ("100", "Segment sequence error"),
    "empty": ("100", "Segment sequence error"),
}
INTERNAL_ERROR = ("207", "Application internal error")

log = get_logger("cmrx.mllp")


def frame(message: bytes) -> bytes:
    return START_BLOCK + message + END_BLOCK


def build_ack(code: str, incoming: bytes | str, reason: str | None = None, error_code: tuple[str, str] | None = None) -> bytes:
    """An HL7 v2.5.1 ACK built with hl7apy: MSA-1 ``code``, MSA-2 the incoming MSH-10, and for
    AE/AR the reason in MSA-3 and an ERR segment (ERR-3 from table 0357, ERR-4 E, ERR-8 reason)."""
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.core import Message

    from consumer.codecs import hl7_escape, hl7_header

    header = hl7_header(incoming)

    def first(number: int, component: int = 0) -> str:
        parts = header.get(number, [])
        return hl7_escape(parts[component]) if len(parts) > component else ""

    ack = Message("ACK", version=ACK_VERSION, validation_level=VALIDATION_LEVEL.TOLERANT)
    ack.msh.msh_3 = "CMRX"
    ack.msh.msh_4 = "CMRX"
    if first(3):
        ack.msh.msh_5 = first(3)
    if first(4):
        ack.msh.msh_6 = first(4)
    ack.msh.msh_7 = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S%z")
    trigger = first(9, 1)
    ack.msh.msh_9 = f"ACK^{trigger}^ACK" if trigger else "ACK"
    ack.msh.msh_10 = uuid.uuid4().hex[:20]
    ack.msh.msh_11 = first(11) or "P"
    ack.msh.msh_12 = ACK_VERSION
    msa = ack.add_segment("MSA")
    msa.msa_1 = code
    control_id = first(10)
    if control_id:
        msa.msa_2 = control_id
    if reason:
        msa.msa_3 = hl7_escape(reason)
    if code != "AA":
        number, text = error_code or INTERNAL_ERROR
        err = ack.add_segment("ERR")
        err.err_3 = f"{number}^{hl7_escape(text)}^HL70357"
        err.err_4 = "E"
        if reason:
            err.err_8 = hl7_escape(reason)
    return ack.to_er7().encode("utf-8")


class MllpBridge:
    """Decode, publish, acknowledge. ``producer`` is a confluent-kafka Producer (idempotent,
    acks=all); a background thread serves its delivery callbacks, which resolve asyncio futures,
    so the event loop never blocks on Kafka."""

    def __init__(
        self,
        producer: Any,
        topic: str,
        *,
        settings: Settings | None = None,
        delivery_timeout_s: float = DEFAULT_DELIVERY_TIMEOUT_S,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.settings = settings
        self.delivery_timeout_s = delivery_timeout_s
        self.max_frame_bytes = max_frame_bytes
        self.server: asyncio.AbstractServer | None = None
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self.counts = {"AA": 0, "AE": 0, "AR": 0}

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str, port: int) -> asyncio.AbstractServer:
        """Listen (port 0 picks a free one: see ``port``) and start serving delivery callbacks."""
        self._poller = threading.Thread(target=self._poll_loop, name="mllp-kafka-poll", daemon=True)
        self._poller.start()
        self.server = await asyncio.start_server(self.handle, host, port, limit=2**16)
        log.info("mllp.listening", host=host, port=self.port, topic=self.topic)
        return self.server

    @property
    def port(self) -> int:
        assert self.server is not None and self.server.sockets
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self, flush_timeout_s: float = 5.0) -> None:
        """Stop listening, flush what is in flight and stop the poll thread (the producer's owner
        closes the producer)."""
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        await asyncio.get_running_loop().run_in_executor(None, self.producer.flush, flush_timeout_s)
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=5)

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.1)

    # ------------------------------------------------------------------ connections

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection: frames in, ACKs out, in order."""
        peer = writer.get_extra_info("peername")
        buffer = bytearray()
        oversize_head: bytes | None = None  # set while discarding the rest of a too-large frame
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                buffer += chunk
                while True:
                    if oversize_head is not None:
                        end = buffer.find(END_BLOCK)
                        if end < 0:
                            del buffer[:-1]  # keep a trailing 0x1C that may pair with the next read
                            break
                        del buffer[: end + len(END_BLOCK)]
                        reason = f"message exceeds the maximum frame size of {self.max_frame_bytes} bytes"
                        await self._send(writer, self._reject("AE", oversize_head, reason, INTERNAL_ERROR))
                        oversize_head = None
                        continue
                    start = buffer.find(START_BLOCK)
                    if start < 0:
                        buffer.clear()  # bytes outside a frame
                        break
                    del buffer[:start]
                    end = buffer.find(END_BLOCK, 1)
                    if end < 0:
                        if len(buffer) - 1 > self.max_frame_bytes:
                            oversize_head = bytes(buffer[1:4097])
                            del buffer[:-1]
                        break
                    message = bytes(buffer[1:end])
                    del buffer[: end + len(END_BLOCK)]
                    if len(message) > self.max_frame_bytes:
                        reason = f"message exceeds the maximum frame size of {self.max_frame_bytes} bytes"
                        await self._send(writer, self._reject("AE", message[:4096], reason, INTERNAL_ERROR))
                        continue
                    await self._send(writer, await self.process(message))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            log.debug("mllp.closed", peer=str(peer))
            writer.close()
            try:
                await writer.wait_closed()
            except ConnectionError:
                pass

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, ack: bytes) -> None:
        writer.write(frame(ack))
        await writer.drain()

    # ------------------------------------------------------------------ one message

    async def process(self, message: bytes) -> bytes:
        """Decode, publish and return the ACK for one HL7 v2 message."""
        from consumer.codecs import CONTENT_TYPE_HL7, DecodeError, decode_message, hl7_message_control_id

        control_id = hl7_message_control_id(message)
        try:  # parsing is CPU work: off the loop so other connections keep moving
            envelope = await asyncio.to_thread(decode_message, message, fmt="hl7v2", settings=self.settings)
        except DecodeError as exc:
            log.warning("mllp.rejected", control_id=control_id, code=exc.code, reason=exc.reason)
            return self._reject("AE", message, exc.reason, ERROR_CODES.get(exc.code, INTERNAL_ERROR))
        loop = asyncio.get_running_loop()
        delivered: asyncio.Future[Any] = loop.create_future()

        def on_delivery(err: Any, _msg: Any) -> None:  # runs on the poll thread
            try:
                loop.call_soon_threadsafe(_resolve, delivered, err)
            except RuntimeError:  # loop already closed at shutdown
                pass

        try:
            self.producer.produce(
                self.topic,
                key=envelope.report_id.encode("utf-8"),
                value=message,
                headers=[("content-type", CONTENT_TYPE_HL7.encode())],
                on_delivery=on_delivery,
            )
            error = await asyncio.wait_for(delivered, timeout=self.delivery_timeout_s + 5.0)
        except asyncio.TimeoutError:
            error = "no delivery report in time"
        except BufferError:
            error = "producer queue full"
        except Exception as exc:  # KafkaException and friends: the write did not happen
            error = type(exc).__name__
        if error is not None:
            log.error("mllp.kafka_failed", control_id=control_id, report_id=envelope.report_id, error=str(error))
            return self._reject("AR", message, f"could not store the message on Kafka: {_error_text(error)}; retry later", INTERNAL_ERROR)
        self.counts["AA"] += 1
        log.info("mllp.accepted", control_id=control_id, report_id=envelope.report_id, topic=self.topic)
        return build_ack("AA", message)

    def _reject(self, code: str, message: bytes, reason: str, error_code: tuple[str, str]) -> bytes:
        self.counts[code] += 1
        return build_ack(code, message, reason, error_code)


def _resolve(future: asyncio.Future[Any], err: Any) -> None:
    if not future.done():
        future.set_result(err)


def _error_text(error: Any) -> str:
    """librdkafka error name (e.g. _MSG_TIMED_OUT) rather than its long description."""
    name = getattr(error, "name", None)
    return name() if callable(name) else str(error)


# --------------------------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="listen address (default: settings.runtime.mllp_host)")
    parser.add_argument("--port", type=int, help="listen port (default: settings.runtime.mllp_port)")
    parser.add_argument("--topic", help="topic (default: settings.topics.reports)")
    parser.add_argument("--bootstrap", help="bootstrap servers (default: settings, else the local broker)")
    parser.add_argument("--delivery-timeout", type=float, default=DEFAULT_DELIVERY_TIMEOUT_S, help="seconds Kafka may take before the answer is AR")
    parser.add_argument("--max-frame-bytes", type=int, default=DEFAULT_MAX_FRAME_BYTES, help="larger frames are discarded and answered AE")


def close_client(client: Any) -> None:
    """Release a librdkafka handle now rather than at garbage collection (older clients lack close)."""
    close = getattr(client, "close", None)
    if callable(close):
        close()


def make_producer(bootstrap: str, settings: Settings, delivery_timeout_s: float) -> Any:
    from confluent_kafka import Producer

    from producer.publish import producer_config

    return Producer(producer_config(bootstrap, settings, **{"linger.ms": 0, "message.timeout.ms": int(delivery_timeout_s * 1000)}))


async def serve(bridge: MllpBridge, host: str, port: int) -> None:
    """Serve until SIGTERM/SIGINT, then stop accepting and flush what is in flight."""
    await bridge.start(host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # not on every platform
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await bridge.close()
        log.info("mllp.stopped", counts=bridge.counts)


def run(args: argparse.Namespace) -> int:
    from cmrx.config import get_settings
    from producer.publish import resolve_bootstrap

    settings = get_settings()
    bootstrap = resolve_bootstrap(settings, args.bootstrap)
    producer = make_producer(bootstrap, settings, args.delivery_timeout)
    bridge = MllpBridge(producer, args.topic or settings.topics.reports, settings=settings, delivery_timeout_s=args.delivery_timeout, max_frame_bytes=args.max_frame_bytes)
    try:
        asyncio.run(serve(bridge, args.host or settings.runtime.mllp_host, args.port or settings.runtime.mllp_port))
    finally:
        close_client(producer)
    return 0
