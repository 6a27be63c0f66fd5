"""A real single-node Apache Kafka (KRaft, broker+controller in one JVM) for dev, tests, CI and the demo.

Why: the extractor relies on Kafka transactions (read_committed, exactly-once hand-off), which no
mock reproduces faithfully and Docker is not available. So we fetch the official Kafka jars from
Maven Central with ``mvn`` once (cached under ``<state_dir>/kafka/jars/<version>``, or under
``$CMRX_KAFKA_JARS`` for a cache shared by several checkouts / CI runs), format a KRaft data dir in
the state dir and run ``kafka.Kafka`` with Java 17+.

Commands: ``cmrx kafka start|stop|status|topics``. ``start`` prints the bootstrap address last.
Python API: ``ensure_broker``, ``stop_broker``, ``broker_status``, ``ensure_topics``, ``admin_config``
and ``broker_session`` (a context manager that stops the broker at exit if it started it and
nobody else still uses it).

Environment: ``KAFKA_BOOTSTRAP_SERVERS`` / ``CMRX_KAFKA__BOOTSTRAP_SERVERS`` (use that broker,
start nothing), ``CMRX_KAFKA_JARS`` (jar cache root), ``CMRX_KAFKA_VERSION`` (default below),
``CMRX_KAFKA_PORT`` (preferred port, default 9092), ``CMRX_KAFKA_HEAP`` (default 512m),
``CMRX_KAFKA_KEEP=1`` (``broker_session`` never stops the broker), ``CMRX_KAFKA_CDS=0`` (no class
data sharing archive).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cmrx.logs import get_logger

if TYPE_CHECKING:  # pragma: no cover
    from cmrx.config import Settings

log = get_logger("cmrx.kafka_local")

DEFAULT_VERSION = "4.1.1"
DEFAULT_PORT = 9092
DEFAULT_CONTROLLER_PORT = 9093
DEFAULT_HEAP = "512m"
HOST = "127.0.0.1"  # not "localhost": librdkafka may try ::1 first and stall on it
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
MAVEN_TIMEOUT_S = 900.0
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
# Kafka's own poms stop at slf4j-api 1.7 with no binding; the release tarball ships this bridge.
# If Kafka resolves another log4j-core, _align_log4j_bridge refetches the bridge at that version.
LOG4J_VERSION = "2.24.3"

# Jar name prefixes (before "-<version>.jar") a KRaft broker and the storage tool need. Checked after
# the download and before every start so a half-filled cache fails loudly instead of at class load.
REQUIRED_JARS = (
    "kafka_2.13",
    "kafka-clients",
    "kafka-server",
    "kafka-server-common",
    "kafka-metadata",
    "kafka-raft",
    "kafka-storage",
    "kafka-storage-api",
    "kafka-group-coordinator",
    "kafka-transaction-coordinator",
    "kafka-share-coordinator",
    "kafka-coordinator-common",
    "scala-library",
    "scala-reflect",
    "jackson-databind",
    "argparse4j",
    "slf4j-api",
    "log4j-api",
    "log4j-core",
    "log4j-slf4j-impl",
)
MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"


class KafkaLocalError(RuntimeError):
    """Anything that stops the local broker from being fetched, started or stopped."""


# --------------------------------------------------------------------------------------------- paths


@dataclass(frozen=True)
class Paths:
    """Where everything of the local broker lives (all under ``<state_dir>/kafka``)."""

    root: Path
    jars_root: Path
    version: str

    @property
    def jars(self) -> Path:
        return self.jars_root / self.version

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def properties(self) -> Path:
        return self.root / "server.properties"

    @property
    def log4j(self) -> Path:
        return self.root / "log4j2.properties"

    @property
    def log(self) -> Path:
        return self.root / "broker.log"

    @property
    def pid_file(self) -> Path:
        return self.root / "broker.pid"

    @property
    def state_file(self) -> Path:
        return self.root / "broker.json"

    @property
    def lock_file(self) -> Path:
        return self.root / ".lock"

    @property
    def leases(self) -> Path:
        return self.root / "leases"


def _settings(settings: Settings | None) -> Settings:
    if settings is not None:
        return settings
    from cmrx.config import get_settings

    return get_settings()


def paths(settings: Settings | None = None, version: str | None = None) -> Paths:
    """Resolve the folders from settings and env (absolute, so a later chdir cannot move them)."""
    root = Path(_settings(settings).runtime.state_dir).expanduser().resolve() / "kafka"
    jars_env = os.environ.get("CMRX_KAFKA_JARS")
    jars_root = Path(jars_env).expanduser().resolve() if jars_env else root / "jars"
    return Paths(root=root, jars_root=jars_root, version=version or os.environ.get("CMRX_KAFKA_VERSION") or DEFAULT_VERSION)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise fetch/start/stop across processes (parallel pytest sessions share one broker)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------------------- jars


def _pom(version: str, log4j_version: str) -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- generated by cmrx.kafka_local: only used to resolve the Kafka broker's runtime jars -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.cmrx</groupId>
  <artifactId>kafka-broker-jars</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{version}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j_version}</version>
    </dependency>
  </dependencies>
</project>
"""


def missing_jars(jars: Path) -> list[str]:
    """Names from REQUIRED_JARS with no jar in ``jars``, plus the main classes if absent."""
    names = [p.name for p in jars.glob("*.jar")] if jars.is_dir() else []
    missing = [req for req in REQUIRED_JARS if not any(re.fullmatch(re.escape(req) + r"-\d[\w.\-]*\.jar", n) for n in names)]
    if "kafka_2.13" not in missing:
        core = next(jars.glob("kafka_2.13-*.jar"))
        with zipfile.ZipFile(core) as zf:
            entries = set(zf.namelist())
        for cls in (MAIN_CLASS, STORAGE_TOOL):
            if cls.replace(".", "/") + ".class" not in entries:
                missing.append(cls)
    return missing


def _run_mvn(args: list[str], cwd: Path, log_file: Path) -> None:
    mvn = shutil.which("mvn")
    if not mvn:
        raise KafkaLocalError("mvn not found on PATH: install Maven (apt-get install maven) to fetch the Kafka jars")
    with open(log_file, "ab") as out:
        proc = subprocess.run([mvn, "-B", "-q", *args], cwd=cwd, stdout=out, stderr=subprocess.STDOUT, timeout=MAVEN_TIMEOUT_S, check=False)
    if proc.returncode != 0:
        raise KafkaLocalError(f"mvn {' '.join(args[:1])} failed (rc={proc.returncode}); last lines of {log_file}:\n{_tail(log_file)}")


def ensure_jars(p: Paths) -> Path:
    """Download the broker jars once (atomic rename into the cache) and return their folder."""
    if not missing_jars(p.jars):
        return p.jars
    with _locked(p.jars_root / f".{p.version}.lock"):
        if not missing_jars(p.jars):
            return p.jars
        started = time.monotonic()
        log.info("kafka.jars.fetch", version=p.version, into=str(p.jars))
        work = p.jars_root / f".{p.version}.tmp-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        (work / "jars").mkdir(parents=True)
        (work / "pom.xml").write_text(_pom(p.version, LOG4J_VERSION))
        mvn_log = work / "mvn.log"
        try:
            _run_mvn(
                [f"{DEPENDENCY_PLUGIN}:copy-dependencies", "-DincludeScope=runtime", "-DoutputDirectory=jars"],
                work,
                mvn_log,
            )
            _align_log4j_bridge(work / "jars")
            missing = missing_jars(work / "jars")
            if missing:
                raise KafkaLocalError(f"Kafka {p.version} jars resolved but incomplete, missing: {', '.join(missing)}")
            if p.jars.exists():
                shutil.rmtree(p.jars)
            (work / "jars").rename(p.jars)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        log.info("kafka.jars.ready", version=p.version, jars=len(list(p.jars.glob("*.jar"))), seconds=round(time.monotonic() - started, 1))
    return p.jars


def _align_log4j_bridge(jars: Path) -> None:
    """Keep only one log4j version: if Kafka pulled a different log4j-core than our bridge, the
    bridge must match it, so refetch the bridge at Kafka's version (rare; only on a version bump)."""
    core = sorted(jars.glob("log4j-core-*.jar"))
    bridge = sorted(jars.glob("log4j-slf4j-impl-*.jar"))
    if not core or not bridge:
        return
    core_version = core[0].name[len("log4j-core-") : -len(".jar")]
    bridge_version = bridge[0].name[len("log4j-slf4j-impl-") : -len(".jar")]
    if core_version == bridge_version:
        return
    for jar in bridge:
        jar.unlink()
    _run_mvn(
        [
            f"{DEPENDENCY_PLUGIN}:copy",
            f"-Dartifact=org.apache.logging.log4j:log4j-slf4j-impl:{core_version}",
            f"-DoutputDirectory={jars}",
        ],
        jars.parent,
        jars.parent / "mvn.log",
    )


# ---------------------------------------------------------------------------------------------- java


@functools.lru_cache(maxsize=4)
def _java_version_text(java: str) -> str:
    return subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr


def _java() -> str:
    """Path of a Java 17+ binary (JAVA_HOME first, then PATH): Kafka 4 brokers need 17."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home and (Path(home) / "bin" / "java").exists() else shutil.which("java")
    if not java:
        raise KafkaLocalError("java not found: install a JDK 17+ (apt-get install openjdk-17-jre-headless)")
    out = _java_version_text(java)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    major = int(match.group(1)) if match else 0
    if major == 1 and match and match.group(2):
        major = int(match.group(2))
    if major < 17:
        raise KafkaLocalError(f"Kafka 4 needs Java 17+, {java} is: {out.strip().splitlines()[0] if out.strip() else 'unknown'}")
    return java


def _classpath(jars: Path) -> str:
    return str(jars / "*")


# --------------------------------------------------------------------------------------------- state


@dataclass
class BrokerState:
    """What ``start`` recorded: enough for ``status``/``stop`` and to reuse ports on restart."""

    pid: int | None = None
    port: int | None = None
    controller_port: int | None = None
    cluster_id: str | None = None
    version: str | None = None
    owner: str = "manual"  # "manual" (cmrx kafka start / ensure_broker) or "session" (broker_session)
    started_at: float | None = None
    cds_dump: str | None = None  # where the JVM writes a class-data archive at exit, if it does

    @property
    def bootstrap(self) -> str | None:
        return f"{HOST}:{self.port}" if self.port else None


def _read_state(p: Paths) -> BrokerState:
    try:
        data = json.loads(p.state_file.read_text())
        return BrokerState(**{k: v for k, v in data.items() if k in BrokerState.__dataclass_fields__})
    except (OSError, ValueError, TypeError):
        return BrokerState()


def _write_state(p: Paths, state: BrokerState) -> None:
    tmp = p.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2) + "\n")
    tmp.replace(p.state_file)


def _pid_alive(pid: int | None) -> bool:
    """True for a live, non-zombie process."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _our_broker_pid(p: Paths) -> int | None:
    """The pid from the pid file if that process is alive and is the JVM we started (guards
    against pid reuse after a crash or reboot)."""
    try:
        pid = int(p.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    if not _pid_alive(pid):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return pid
    args = [a.decode(errors="replace") for a in cmdline]
    return pid if MAIN_CLASS in args and str(p.properties) in args else None


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _pick_port(preferred: list[int | None], avoid: set[int]) -> int:
    for port in preferred:
        if port and port not in avoid and _port_free(port):
            return port
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        if port not in avoid:
            return port


def _new_cluster_id() -> str:
    """Kafka's Uuid text form: 16 random bytes, url-safe base64 without padding, not starting '-'."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} not readable)"


# ------------------------------------------------------------------------------------------- configs


def server_properties(data_dir: Path, port: int, controller_port: int, num_partitions: int = 3) -> str:
    """Single-node KRaft combined mode with every internal topic at replication 1 so that
    transactions and consumer groups work; small thread pools for a 2-core machine."""
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{HOST}:{controller_port}",
        "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": str(num_partitions),
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "10",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "true",
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.recovery.threads.per.data.dir": "1",
        "file.delete.delay.ms": "1000",  # tests delete their topics: don't reload them on the next start
        "log.retention.hours": "168",
        "log.segment.bytes": str(64 * 1024 * 1024),
    }
    return "# generated by cmrx.kafka_local; rewritten on every start\n" + "".join(f"{k}={v}\n" for k, v in props.items())


LOG4J2_PROPERTIES = """# generated by cmrx.kafka_local: broker logs go to stdout, which start redirects to broker.log
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = WARN
logger.storage.name = org.apache.kafka.storage.internals.log
logger.storage.level = WARN
"""


def _cds_archive(p: Paths, java: str, jars: Path) -> Path:
    """Per JDK + jar set AppCDS archive, kept beside the jar cache so CI runs sharing
    CMRX_KAFKA_JARS share it too: the JVM dumps the classes it loaded at a clean exit and later
    starts map them in, which roughly halves a warm start on 2 cores (~12 s to ~6-8 s)."""
    jdk = _java_version_text(java)
    key = hashlib.sha1((jdk + "\n".join(sorted(j.name for j in jars.glob("*.jar")))).encode()).hexdigest()[:12]
    return p.jars_root / f"cds-{p.version}-{key}.jsa"


def _cds_opts(archive: Path) -> tuple[list[str], str | None]:
    """JVM flags, and the path the JVM will dump a new archive to (None when one exists)."""
    quiet = "-Xlog:cds*=error"  # the dump warns about every class it skips
    for stale in archive.parent.glob(f"{archive.name}.*.new"):  # left by brokers that were killed
        with contextlib.suppress(OSError):
            if time.time() - stale.stat().st_mtime > 3600:
                stale.unlink()
    if archive.exists():
        return [f"-XX:SharedArchiveFile={archive}", quiet], None
    dump = archive.with_name(f"{archive.name}.{uuid.uuid4().hex[:8]}.new")
    return [f"-XX:ArchiveClassesAtExit={dump}", quiet], str(dump)


def _jvm_opts(p: Paths) -> list[str]:
    heap = os.environ.get("CMRX_KAFKA_HEAP", DEFAULT_HEAP)
    return [
        f"-Xmx{heap}",
        "-Xms128m",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={p.log4j}",
        f"-Dkafka.logs.dir={p.root}",
    ]


# ------------------------------------------------------------------------------------------- control


def _admin_ready(bootstrap: str, timeout_s: float) -> bool:
    """One metadata round trip; librdkafka's connect errors are silenced while we poll."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, "error_cb": lambda _err: None, "socket.connection.setup.timeout.ms": 2000})
    try:
        md = admin.list_topics(timeout=timeout_s)
        return bool(md.brokers)
    except Exception:  # KafkaException while the broker is still coming up
        return False


def _format_storage(p: Paths, java: str, jars: Path, cluster_id: str) -> None:
    """``kafka-storage format`` once per data dir (4.x refuses to start an unformatted KRaft dir)."""
    if (p.data / "meta.properties").exists():
        return
    p.data.mkdir(parents=True, exist_ok=True)
    cmd = [java, *_jvm_opts(p), "-cp", _classpath(jars), STORAGE_TOOL, "format", "-t", cluster_id, "-c", str(p.properties)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
    if proc.returncode != 0:
        raise KafkaLocalError(f"formatting {p.data} failed (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    log.info("kafka.storage.formatted", data=str(p.data), cluster_id=cluster_id)


def broker_status(settings: Settings | None = None) -> dict[str, Any]:
    """Local broker state as a dict (running, pid, bootstrap, ...) plus any configured external broker."""
    s = _settings(settings)
    p = paths(s)
    state = _read_state(p)
    pid = _our_broker_pid(p)
    return {
        "running": pid is not None,
        "pid": pid,
        "bootstrap": state.bootstrap if pid else None,
        "version": state.version if pid else None,
        "owner": state.owner if pid else None,
        "external_bootstrap": s.kafka.bootstrap_servers,
        "state_dir": str(p.root),
        "log": str(p.log),
    }


def start_broker(settings: Settings | None = None, *, owner: str = "manual", timeout_s: float = START_TIMEOUT_S) -> str:
    """Start the local broker, or return the address of the one already running (idempotent)."""
    s = _settings(settings)
    p = paths(s)
    p.root.mkdir(parents=True, exist_ok=True)
    with _locked(p.lock_file):
        state = _read_state(p)
        if _our_broker_pid(p) and state.port:
            if _admin_ready(state.bootstrap or "", 10.0):
                log.info("kafka.already_running", bootstrap=state.bootstrap, pid=state.pid)
                return state.bootstrap or ""
            raise KafkaLocalError(f"broker pid {state.pid} is running but {state.bootstrap} does not answer; see {p.log}:\n{_tail(p.log)}")
        p.pid_file.unlink(missing_ok=True)
        return _start_locked(s, p, state, owner, timeout_s)


def _start_locked(s: Settings, p: Paths, state: BrokerState, owner: str, timeout_s: float) -> str:
    started = time.monotonic()
    java = _java()
    jars = ensure_jars(p)
    preferred = int(os.environ.get("CMRX_KAFKA_PORT") or DEFAULT_PORT)
    port = _pick_port([state.port, preferred], set())
    controller_port = _pick_port([state.controller_port, DEFAULT_CONTROLLER_PORT], {port})
    if state.version and state.version != p.version and p.data.exists():
        log.warning("kafka.version_changed", old=state.version, new=p.version, note="keeping data dir")
    cluster_id = state.cluster_id if state.cluster_id and (p.data / "meta.properties").exists() else _new_cluster_id()
    p.properties.write_text(server_properties(p.data, port, controller_port, s.topics.partitions))
    p.log4j.write_text(LOG4J2_PROPERTIES)
    _format_storage(p, java, jars, cluster_id)
    if p.log.exists() and p.log.stat().st_size:
        p.log.replace(p.log.with_suffix(".log.1"))
    cds, cds_dump = _cds_opts(_cds_archive(p, java, jars)) if os.environ.get("CMRX_KAFKA_CDS", "1") not in ("0", "false") else ([], None)
    cmd = [java, *_jvm_opts(p), *cds, "-cp", _classpath(jars), MAIN_CLASS, str(p.properties)]
    with open(p.log, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=p.root, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    p.pid_file.write_text(f"{proc.pid}\n")
    state = BrokerState(pid=proc.pid, port=port, controller_port=controller_port, cluster_id=cluster_id, version=p.version, owner=owner, started_at=time.time(), cds_dump=cds_dump)
    _write_state(p, state)
    bootstrap = state.bootstrap or ""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            p.pid_file.unlink(missing_ok=True)
            raise KafkaLocalError(f"Kafka broker exited with rc={proc.returncode} during start; last lines of {p.log}:\n{_tail(p.log)}")
        if _admin_ready(bootstrap, 2.0):
            break
        if time.monotonic() > deadline:
            _terminate(proc.pid, proc)
            p.pid_file.unlink(missing_ok=True)
            if cds_dump:
                Path(cds_dump).unlink(missing_ok=True)
            raise KafkaLocalError(f"Kafka broker did not answer on {bootstrap} within {timeout_s:.0f}s; last lines of {p.log}:\n{_tail(p.log)}")
        time.sleep(0.3)
    log.info("kafka.started", bootstrap=bootstrap, pid=proc.pid, version=p.version, seconds=round(time.monotonic() - started, 1), log=str(p.log))
    return bootstrap


def _terminate(pid: int, proc: subprocess.Popen[bytes] | None = None, timeout_s: float = STOP_TIMEOUT_S) -> bool:
    """SIGTERM (Kafka's controlled shutdown), then SIGKILL if it hangs; True if it exited cleanly."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return True
        if not _pid_alive(pid):
            return True
        time.sleep(0.2)
    log.warning("kafka.stop.kill", pid=pid, after_s=timeout_s)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if proc is not None:
        proc.wait(timeout=10)
    return False


def stop_broker(settings: Settings | None = None) -> bool:
    """Stop the local broker this state dir started; True if one was running."""
    p = paths(settings)
    if not p.root.exists():
        return False
    with _locked(p.lock_file):
        return _stop_locked(p)


def _stop_locked(p: Paths) -> bool:
    pid = _our_broker_pid(p)
    if pid is None:
        p.pid_file.unlink(missing_ok=True)
        return False
    started = time.monotonic()
    dump = _read_state(p).cds_dump
    # Dumping the class archive at exit can take 10-20 s on a busy 2-core machine: wait for it.
    clean = _terminate(pid, timeout_s=STOP_TIMEOUT_S * (4 if dump else 1))
    p.pid_file.unlink(missing_ok=True)
    if dump:
        new = Path(dump)
        if clean and new.exists() and new.stat().st_size:
            new.replace(new.with_name(new.name.split(".jsa.", 1)[0] + ".jsa"))
        else:
            new.unlink(missing_ok=True)
    log.info("kafka.stopped", pid=pid, seconds=round(time.monotonic() - started, 1))
    return True


def ensure_broker(settings: Settings | None = None, *, owner: str = "manual") -> str:
    """The bootstrap address to use: the configured one if set (``KAFKA_BOOTSTRAP_SERVERS`` or
    ``CMRX_KAFKA__BOOTSTRAP_SERVERS``), else the local broker, started if needed. ``owner="session"``
    lets ``broker_session`` stop it later; the default keeps it running until ``cmrx kafka stop``."""
    s = _settings(settings)
    if s.kafka.bootstrap_servers:
        return s.kafka.bootstrap_servers
    return start_broker(s, owner=owner)


# -------------------------------------------------------------------------------------------- leases


@contextlib.contextmanager
def broker_session(settings: Settings | None = None) -> Iterator[str]:
    """Yield a bootstrap address for a test run or demo; at exit stop the local broker if a session
    started it and no other live session holds a lease (parallel pytest runs share one broker).
    A broker started by hand (``cmrx kafka start``) is never stopped here; nor with CMRX_KAFKA_KEEP=1."""
    s = _settings(settings)
    if s.kafka.bootstrap_servers:
        yield s.kafka.bootstrap_servers
        return
    p = paths(s)
    p.leases.mkdir(parents=True, exist_ok=True)
    lease = p.leases / f"{os.getpid()}.{uuid.uuid4().hex[:8]}"
    lease.touch()
    try:
        yield ensure_broker(s, owner="session")
    finally:
        lease.unlink(missing_ok=True)
        if os.environ.get("CMRX_KAFKA_KEEP", "") in ("", "0", "false"):
            _release(p)


def _release(p: Paths) -> None:
    """Stop a session-started broker unless another live session holds a lease. Check and stop
    under one lock: a session taking a lease meanwhile either sees the broker stopped (and starts
    it) or its lease is seen here (and the broker stays up)."""
    with _locked(p.lock_file):
        others = []
        for other in p.leases.iterdir():
            pid = other.name.split(".", 1)[0]
            if pid.isdigit() and _pid_alive(int(pid)):
                others.append(other.name)
            else:
                other.unlink(missing_ok=True)
        if others:
            log.info("kafka.session.keep", reason="other sessions use it", leases=others)
        elif _read_state(p).owner == "session":
            _stop_locked(p)


# -------------------------------------------------------------------------------------------- topics


def admin_config(bootstrap: str, settings: Settings | None = None) -> dict[str, Any]:
    """librdkafka config for an AdminClient: the shared client settings with this bootstrap."""
    config = _settings(settings).kafka.client_config()
    config["bootstrap.servers"] = bootstrap
    return config


def topic_names(settings: Settings | None = None) -> list[str]:
    """Every topic named in ``settings.topics`` (the string fields), in declaration order."""
    topics = _settings(settings).topics
    return [v for v in topics.model_dump().values() if isinstance(v, str)]


def ensure_topics(bootstrap: str, settings: Settings | None = None, timeout_s: float = 30.0) -> list[str]:
    """Create all topics of ``settings.topics`` with the configured partitions and replication;
    existing ones are left as they are. Returns the names once the broker lists them all."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    s = _settings(settings)
    names = topic_names(s)
    admin = AdminClient(admin_config(bootstrap, s))
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    wanted = [NewTopic(n, num_partitions=s.topics.partitions, replication_factor=s.topics.replication_factor,
                       config={"max.message.bytes": str(s.topics.max_message_bytes)}) for n in names if n not in existing]
    if wanted:
        futures = admin.create_topics(wanted, operation_timeout=timeout_s, request_timeout=timeout_s)
        for name, future in futures.items():
            try:
                future.result(timeout=timeout_s)
                log.info("kafka.topic.created", topic=name, partitions=s.topics.partitions, replication=s.topics.replication_factor)
            except KafkaException as exc:
                if exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    continue
                raise
    deadline = time.monotonic() + timeout_s
    while True:
        md = admin.list_topics(timeout=timeout_s).topics
        ready = [n for n in names if n in md and md[n].error is None and md[n].partitions and all(pm.leader >= 0 for pm in md[n].partitions.values())]
        if len(ready) == len(names):
            return names
        if time.monotonic() > deadline:
            raise KafkaLocalError(f"topics not ready on {bootstrap} after {timeout_s:.0f}s: {sorted(set(names) - set(ready))}")
        time.sleep(0.2)


def delete_topics(bootstrap: str, names: list[str], settings: Settings | None = None, timeout_s: float = 10.0) -> None:
    """Best-effort delete (tests clean up their uniquely named topics)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(admin_config(bootstrap, settings))
    for future in admin.delete_topics(names, operation_timeout=timeout_s, request_timeout=timeout_s).values():
        with contextlib.suppress(Exception):
            future.result(timeout=timeout_s)


# ----------------------------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["start", "stop", "status", "topics"], help="what to do with the local broker")
    parser.add_argument("--json", action="store_true", help="status as JSON")
    parser.add_argument("--timeout", type=float, default=START_TIMEOUT_S, help="seconds to wait for the broker to answer")


def run(args: argparse.Namespace) -> int:
    try:
        if args.action == "start":
            s = _settings(None)
            if s.kafka.bootstrap_servers:
                log.info("kafka.external", bootstrap=s.kafka.bootstrap_servers, note="bootstrap configured; no local broker started")
                print(s.kafka.bootstrap_servers)
                return 0
            print(start_broker(s, timeout_s=args.timeout))
            return 0
        if args.action == "stop":
            print("stopped" if stop_broker() else "not running")
            return 0
        if args.action == "status":
            info = broker_status()
            if args.json:
                print(json.dumps(info, indent=2))
            elif info["running"]:
                print(f"running {info['bootstrap']} pid={info['pid']} version={info['version']} log={info['log']}")
            else:
                print("not running" + (f" (configured external broker: {info['external_bootstrap']})" if info["external_bootstrap"] else ""))
            return 0 if info["running"] else 3
        if args.action == "topics":
            bootstrap = ensure_broker()
            for name in ensure_topics(bootstrap):
                print(name)
            return 0
    except KafkaLocalError as exc:
        log.error("kafka.error", action=args.action, error=str(exc).splitlines()[0])
        print(str(exc), file=sys.stderr)
        return 1
    return 2
