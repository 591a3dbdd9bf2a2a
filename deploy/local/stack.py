"""The local stack: a real Apache Kafka broker (KRaft) and a real Elasticsearch node on loopback.

No Docker: the JVM artifacts come from Maven Central (``mvn dependency:copy-dependencies`` on
the small POMs beside this file), are cached outside the repository (``stack.cache_dir``), and
run as plain processes whose data, logs and pid files live under ``stack.state_dir``.

``up`` is idempotent (a healthy service is left alone, a crashed one is restarted), ``status``
tells running / starting / crashed / stopped from the pid file, the process and a health check,
``down`` stops the process group (TERM, then KILL after a grace period).

One module on purpose (about 570 lines): Kafka and Elasticsearch share the download, process,
readiness and stop machinery; split apart, each half would repeat it.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import string
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Callable, Iterator

from stimmung.config import StackSettings

Report = Callable[[str], None]
MIN_JAVA = 17


class StackError(RuntimeError):
    """A clear, user-facing reason why the stack cannot do what was asked."""


@dataclass
class ServiceStatus:
    name: str
    state: str  # running | starting | crashed | stopped
    pid: int | None
    endpoint: str
    detail: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _template(name: str) -> string.Template:
    text = resources.files("stimmung.localstack").joinpath("templates", name).read_text(encoding="utf-8")
    return string.Template(text)


def _pom(name: str) -> Path:
    return Path(str(resources.files("stimmung.localstack").joinpath(name, "pom.xml")))


def find_java(settings: StackSettings) -> Path:
    """JAVA_HOME of a JDK >= 17: settings, then $JAVA_HOME, then `java` on PATH."""
    candidates: list[Path] = []
    if settings.java_home:
        candidates.append(Path(settings.java_home))
    if os.environ.get("JAVA_HOME"):
        candidates.append(Path(os.environ["JAVA_HOME"]))
    on_path = shutil.which("java")
    if on_path:
        candidates.append(Path(os.path.realpath(on_path)).parent.parent)
    for home in candidates:
        java = home / "bin" / "java"
        if not java.is_file():
            continue
        try:
            out = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=30).stderr
        except (OSError, subprocess.TimeoutExpired):
            continue
        match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
        if match:
            major = int(match.group(1)) if match.group(1) != "1" else int(match.group(2) or 0)
            if major >= MIN_JAVA:
                return home
    raise StackError(
        f"no Java {MIN_JAVA}+ found (looked at stack.java_home, $JAVA_HOME and `java` on PATH). "
        "Install a JDK, e.g. `apt-get install openjdk-17-jdk-headless`, or set STIMMUNG_STACK__JAVA_HOME."
    )


def find_maven() -> str:
    mvn = shutil.which("mvn")
    if not mvn:
        raise StackError(
            "Maven (`mvn`) not found: it is needed once to fetch Kafka and Elasticsearch from Maven "
            "Central. Install it, e.g. `apt-get install maven`."
        )
    return mvn


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise installs and starts across processes (two `stack up` at once must not clash)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _tail(path: Path, lines: int = 15) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            return "\n".join(fh.read().decode("utf-8", "replace").splitlines()[-lines:])
    except OSError:
        return ""


class Service:
    name = "service"

    def __init__(self, settings: StackSettings, report: Report):
        self.settings = settings
        self.report = report
        self.dir = Path(settings.state_dir) / self.name
        self.pidfile = self.dir / "pid"
        self.logfile = self.dir / "logs" / "stdout.log"

    # --- to implement -------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        raise NotImplementedError

    @property
    def ports(self) -> list[int]:
        raise NotImplementedError

    def install(self) -> None:
        raise NotImplementedError

    def prepare(self, java_home: Path) -> tuple[list[str], dict[str, str], str | None]:
        """Write config; return (argv, extra env, user to run as or None)."""
        raise NotImplementedError

    def healthy(self) -> bool:
        raise NotImplementedError

    # --- shared lifecycle ---------------------------------------------------------------------
    def _pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def status(self) -> ServiceStatus:
        pid = self._pid()
        if pid is None:
            return ServiceStatus(self.name, "stopped", None, self.endpoint)
        if not _alive(pid):
            return ServiceStatus(self.name, "crashed", pid, self.endpoint,
                                 f"process {pid} is gone; last log lines:\n{_tail(self.logfile)}")
        if self.healthy():
            return ServiceStatus(self.name, "running", pid, self.endpoint)
        return ServiceStatus(self.name, "starting", pid, self.endpoint, "process up, health check not passing yet")

    def start(self, java_home: Path) -> ServiceStatus:
        current = self.status()
        if current.state in ("running", "starting"):
            if current.state == "starting":
                self._wait_healthy(current.pid)
            self.report(f"{self.name}: already running (pid {current.pid}) at {self.endpoint}")
            return self.status()
        if current.state == "crashed":
            self.report(f"{self.name}: previous process {current.pid} had crashed; restarting")
            self.pidfile.unlink(missing_ok=True)
            # The dead process's children (the JVM under its wrapper) may hold the ports for a
            # moment after the leader is gone: give them time before calling the ports taken.
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and any(_port_open(p) for p in self.ports):
                time.sleep(0.2)
        busy = [p for p in self.ports if _port_open(p)]
        if busy:
            raise StackError(
                f"{self.name}: port(s) {busy} already in use by another process; stop it or choose other "
                f"ports (STIMMUNG_STACK__*_PORT)"
            )
        self.install()
        argv, env, user = self.prepare(java_home)
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        with open(self.logfile, "ab") as log:
            log.write(f"\n--- stimmung stack: starting {self.name} at {time.strftime('%Y-%m-%dT%H:%M:%S')} ---\n".encode())
            log.flush()
            proc = subprocess.Popen(
                argv, cwd=self.dir, env={**os.environ, **env}, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True, user=user,
            )
        self.pidfile.write_text(str(proc.pid))
        self.report(f"{self.name}: started (pid {proc.pid}); waiting for health at {self.endpoint}")
        self._wait_healthy(proc.pid)
        self.configure()
        self.report(f"{self.name}: healthy at {self.endpoint}")
        return self.status()

    def configure(self) -> None:  # noqa: B027 - optional hook
        """Runtime configuration once the service is healthy (e.g. users)."""

    def _wait_healthy(self, pid: int | None) -> None:
        deadline = time.monotonic() + self.settings.start_timeout_s
        while time.monotonic() < deadline:
            if pid is not None and not _alive(pid):
                raise StackError(f"{self.name} exited during start-up; last log lines:\n{_tail(self.logfile, 30)}"
                                 f"\n(full log: {self.logfile})")
            if self.healthy():
                return
            time.sleep(0.5)
        raise StackError(f"{self.name} not healthy after {self.settings.start_timeout_s:.0f}s; "
                         f"last log lines:\n{_tail(self.logfile, 30)}")

    def stop(self, grace_s: float = 30.0) -> str:
        pid = self._pid()
        if pid is None:
            return f"{self.name}: not running"
        if _alive(pid):
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + grace_s
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if _alive(pid):
                os.killpg(pid, signal.SIGKILL)
                while _alive(pid):
                    time.sleep(0.1)
            message = f"{self.name}: stopped (pid {pid})"
        else:
            message = f"{self.name}: was not running (stale pid {pid} removed)"
        self.pidfile.unlink(missing_ok=True)
        return message

    def _maven_fetch(self, pom: Path, out_dir: Path, properties: dict[str, str]) -> None:
        mvn = find_maven()
        argv = [mvn, "-B", "-q", "--strict-checksums", "-f", str(pom), "dependency:copy-dependencies",
                f"-DoutputDirectory={out_dir}", "-DincludeScope=runtime"]
        argv += [f"-D{k}={v}" for k, v in properties.items()]
        self.report(f"{self.name}: fetching from Maven Central into {out_dir} (first run only)")
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
            raise StackError(f"{self.name}: Maven could not fetch the artifacts:\n{tail}")


class KafkaService(Service):
    name = "kafka"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.settings.kafka_port}"

    @property
    def ports(self) -> list[int]:
        sasl = [self.settings.kafka_sasl_port] if self.settings.kafka_sasl_port else []
        return [self.settings.kafka_port, self.settings.kafka_controller_port, *sasl]

    def _listener_config(self) -> dict[str, str]:
        """The optional SASL listener (SCRAM-SHA-512, as Strimzi clusters use): lets clients and
        tests exercise authenticated connections against the same broker."""
        port = self.settings.kafka_sasl_port
        if not port:
            return {"extra_listeners": "", "extra_protocols": "", "sasl_config": ""}
        return {
            "extra_listeners": f",SASL_PLAINTEXT://127.0.0.1:{port}",
            "extra_protocols": ",SASL_PLAINTEXT:SASL_PLAINTEXT",
            "sasl_config": "sasl.enabled.mechanisms=SCRAM-SHA-512\n"
                           "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config="
                           "org.apache.kafka.common.security.scram.ScramLoginModule required;\n",
        }

    def configure(self) -> None:
        if not self.settings.kafka_sasl_port:
            return
        from kafka import KafkaAdminClient
        from kafka.admin import ScramMechanism, UserScramCredentialUpsertion

        admin = KafkaAdminClient(bootstrap_servers=[self.endpoint], client_id="stimmung-stack-users")
        try:
            result = admin.alter_user_scram_credentials([UserScramCredentialUpsertion(
                self.settings.kafka_sasl_user, ScramMechanism.SCRAM_SHA_512,
                self.settings.kafka_sasl_password.get_secret_value())])
        finally:
            admin.close()
        if any(result.values()):
            raise StackError(f"kafka: creating the SCRAM user failed: {result}")

    @property
    def home(self) -> Path:
        return Path(self.settings.cache_dir) / f"kafka-{self.settings.kafka_version}"

    def install(self) -> None:
        marker = self.home / ".complete"
        with _locked(Path(self.settings.cache_dir) / ".install.lock"):
            if marker.exists():
                return
            shutil.rmtree(self.home, ignore_errors=True)
            self._maven_fetch(_pom("kafka"), self.home / "libs", {"kafka.version": self.settings.kafka_version})
            marker.write_text(self.settings.kafka_version)

    def prepare(self, java_home: Path) -> tuple[list[str], dict[str, str], str | None]:
        s = self.settings
        data, logs, config = self.dir / "data", self.dir / "logs", self.dir / "config"
        for d in (data, logs, config):
            d.mkdir(parents=True, exist_ok=True)
        props = config / "server.properties"
        props.write_text(_template("kafka-server.properties").substitute(
            kafka_port=s.kafka_port, controller_port=s.kafka_controller_port, data_dir=data, **self._listener_config()))
        log4j = config / "log4j2.properties"
        log4j.write_text(_template("kafka-log4j2.properties").safe_substitute(log_dir=logs))
        java = str(java_home / "bin" / "java")
        classpath = str(self.home / "libs" / "*")
        common = ["-cp", classpath, f"-Dlog4j2.configurationFile={log4j}"]
        if not (data / "meta.properties").exists():
            # KRaft storage must be formatted once with a cluster id.
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            done = subprocess.run([java, *common, "kafka.tools.StorageTool", "format",
                                   # "=" form: a random id may start with "-", which argparse would take for an option
                                   f"--cluster-id={cluster_id}",
                                   "-c", str(props)], capture_output=True, text=True)
            if done.returncode != 0:
                raise StackError(f"kafka: formatting storage failed:\n{done.stdout}{done.stderr}")
        argv = [java, f"-Xms{s.kafka_heap}", f"-Xmx{s.kafka_heap}", "-XX:+UseG1GC",
                "-Djava.awt.headless=true", f"-Dkafka.logs.dir={logs}", *common, "kafka.Kafka", str(props)]
        return argv, {}, None

    def healthy(self) -> bool:
        if not _port_open(self.settings.kafka_port):
            return False
        from kafka import KafkaAdminClient  # local import: the stack must load without it
        from kafka.errors import KafkaConfigurationError, KafkaError

        try:
            admin = KafkaAdminClient(bootstrap_servers=[self.endpoint], request_timeout_ms=5000,
                                     client_id="stimmung-stack-health")
        except KafkaConfigurationError:
            raise  # our bug, not an unhealthy broker: never hide it behind a timeout
        except (KafkaError, OSError):
            return False
        try:
            cluster = admin.describe_cluster()
            return bool(cluster.get("brokers"))
        except (KafkaError, OSError):
            return False
        finally:
            admin.close()


class ElasticsearchService(Service):
    name = "elasticsearch"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.settings.es_http_port}"

    @property
    def ports(self) -> list[int]:
        return [self.settings.es_http_port, self.settings.es_transport_port]

    @property
    def home(self) -> Path:
        return Path(self.settings.cache_dir) / f"elasticsearch-{self.settings.elasticsearch_version}"

    def install(self) -> None:
        marker = self.home / ".complete"
        with _locked(Path(self.settings.cache_dir) / ".install.lock"):
            if marker.exists():
                return
            shutil.rmtree(self.home, ignore_errors=True)
            download = Path(self.settings.cache_dir) / f".download-es-{self.settings.elasticsearch_version}"
            shutil.rmtree(download, ignore_errors=True)
            self._maven_fetch(_pom("elasticsearch"), download,
                              {"elasticsearch.version": self.settings.elasticsearch_version})
            archives = list(download.glob("elasticsearch-*.zip"))
            if len(archives) != 1:
                raise StackError(f"elasticsearch: expected one zip in {download}, found {archives}")
            self.report(f"elasticsearch: unpacking {archives[0].name}")
            staging = Path(self.settings.cache_dir) / f".unpack-es-{os.getpid()}"
            shutil.rmtree(staging, ignore_errors=True)
            with zipfile.ZipFile(archives[0]) as zf:
                for info in zf.infolist():
                    target = zf.extract(info, staging)
                    mode = (info.external_attr >> 16) & 0o777
                    if mode and not info.is_dir():
                        os.chmod(target, mode)
            (top,) = [p for p in staging.iterdir() if p.is_dir()]
            os.replace(top, self.home)
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(download, ignore_errors=True)
            for script in (self.home / "bin").iterdir():
                script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            # The node may run as an unprivileged user: everything must be readable by it.
            for root, dirs, files in os.walk(self.home):
                for name in dirs + files:
                    p = Path(root) / name
                    p.chmod(p.stat().st_mode | stat.S_IRGRP | stat.S_IROTH | (stat.S_IXGRP | stat.S_IXOTH if p.is_dir() else 0))
            marker.write_text(self.settings.elasticsearch_version)

    def _run_as(self) -> tuple[str | None, int | None, int | None]:
        """Elasticsearch refuses to run as root: as root, run it as a dedicated system user."""
        if os.geteuid() != 0:
            return None, None, None
        user = self.settings.es_user
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            useradd = shutil.which("useradd")
            if not useradd:
                raise StackError(f"elasticsearch: running as root and user {user!r} does not exist; create it") from None
            subprocess.run([useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user],
                           check=True, capture_output=True)
            self.report(f"elasticsearch: created system user {user!r} (Elasticsearch refuses to run as root)")
            entry = pwd.getpwnam(user)
        return user, entry.pw_uid, entry.pw_gid

    def _install_analysis_plugin(self, java_home: Path) -> None:
        """Build and install our small stable plugin that provides the ``german`` and ``english``
        analyzers (Lucene's own classes, as in Elasticsearch's analysis-common module, which the
        integ-test distribution lacks). Without a JDK compiler it is skipped with a warning; the
        pipeline then falls back to the standard analyzer and says so."""
        source = Path(str(resources.files("stimmung.localstack").joinpath("elasticsearch", "analysis-plugin")))
        files = sorted(p for p in source.rglob("*") if p.is_file())
        digest = hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()[:12]
        marker = self.home / f".stimmung-analysis-{digest}"
        if marker.exists():
            return
        javac = java_home / "bin" / "javac"
        if not javac.is_file():
            self.report(f"elasticsearch: WARNING no javac in {java_home}: the local node will lack the german/english "
                        "analyzers (install a JDK, not a JRE, to get them)")
            return
        with _locked(Path(self.settings.cache_dir) / ".install.lock"), tempfile.TemporaryDirectory() as tmp:
            build = Path(tmp)
            classes = build / "classes"
            done = subprocess.run([str(javac), "--release", "17", "-d", str(classes), "-cp", str(self.home / "lib" / "*"),
                                   *[str(p) for p in files if p.suffix == ".java"]], capture_output=True, text=True)
            if done.returncode != 0:
                raise StackError(f"elasticsearch: building the analysis plugin failed:\n{done.stderr}")
            bundle = build / "stimmung-analysis.zip"
            with zipfile.ZipFile(bundle, "w") as zf:
                with zipfile.ZipFile(build / "plugin.jar", "w") as jar:
                    for cls in sorted(classes.rglob("*.class")):
                        jar.write(cls, cls.relative_to(classes).as_posix())
                zf.write(build / "plugin.jar", "stimmung-analysis.jar")
                zf.write(source / "named_components.json", "named_components.json")
                descriptor = string.Template((source / "stable-plugin-descriptor.properties").read_text())
                zf.writestr("stable-plugin-descriptor.properties", descriptor.substitute(
                    plugin_version=digest, elasticsearch_version=self.settings.elasticsearch_version))
            env = {**os.environ, "ES_JAVA_HOME": str(java_home)}
            tool = str(self.home / "bin" / "elasticsearch-plugin")
            subprocess.run([tool, "remove", "--purge", "stimmung-analysis"], env=env, capture_output=True)
            done = subprocess.run([tool, "install", "--batch", bundle.as_uri()], env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise StackError(f"elasticsearch: installing the analysis plugin failed:\n{done.stdout}{done.stderr}")
            for stale in self.home.glob(".stimmung-analysis-*"):
                stale.unlink()
            for p in (self.home / "plugins").rglob("*"):
                p.chmod(p.stat().st_mode | stat.S_IRGRP | stat.S_IROTH | (stat.S_IXGRP | stat.S_IXOTH if p.is_dir() else 0))
            marker.write_text(digest)
            self.report("elasticsearch: installed the analysis plugin (german, english, asciifolding)")

    def prepare(self, java_home: Path) -> tuple[list[str], dict[str, str], str | None]:
        s = self.settings
        self._install_analysis_plugin(java_home)
        user, uid, gid = self._run_as()
        data, logs, config, tmp = self.dir / "data", self.dir / "logs", self.dir / "config", self.dir / "tmp"
        for d in (data, logs, config, tmp):
            d.mkdir(parents=True, exist_ok=True)
        shutil.copytree(self.home / "config", config, dirs_exist_ok=True)
        (config / "elasticsearch.yml").write_text(_template("elasticsearch.yml").substitute(
            http_port=s.es_http_port, transport_port=s.es_transport_port, data_dir=data, log_dir=logs))
        if uid is not None and gid is not None:
            for root, _dirs, files in os.walk(self.dir):
                os.chown(root, uid, gid)
                for name in files:
                    os.chown(Path(root) / name, uid, gid)
            # Every parent of the state dir must be traversable by that user.
            for parent in self.dir.parents:
                if not parent.stat().st_mode & stat.S_IXOTH:
                    raise StackError(f"elasticsearch runs as {user!r}, who cannot enter {parent}; "
                                     f"choose a state dir outside it (STIMMUNG_STACK__STATE_DIR)")
        env = {
            "ES_JAVA_HOME": str(java_home),
            "ES_PATH_CONF": str(config),
            "ES_TMPDIR": str(tmp),
            "ES_JAVA_OPTS": f"-Xms{s.es_heap} -Xmx{s.es_heap}",
            "HOME": str(self.dir),
        }
        return [str(self.home / "bin" / "elasticsearch")], env, user

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/_cluster/health?timeout=2s", timeout=5) as resp:
                body = json.loads(resp.read())
            return body.get("status") in ("green", "yellow")
        except (urllib.error.URLError, OSError, ValueError):
            return False


class LocalStack:
    def __init__(self, settings: StackSettings, report: Report = lambda _: None):
        self.settings = settings
        self.report = report
        self.services: dict[str, Service] = {
            "kafka": KafkaService(settings, report),
            "elasticsearch": ElasticsearchService(settings, report),
        }

    def _select(self, only: list[str] | None) -> list[Service]:
        if not only:
            return list(self.services.values())
        unknown = [n for n in only if n not in self.services]
        if unknown:
            raise StackError(f"unknown service(s) {unknown}; known: {sorted(self.services)}")
        return [self.services[n] for n in only]

    def up(self, only: list[str] | None = None) -> list[ServiceStatus]:
        java_home = find_java(self.settings)
        Path(self.settings.state_dir).mkdir(parents=True, exist_ok=True)
        with _locked(Path(self.settings.state_dir) / ".stack.lock"):
            return [svc.start(java_home) for svc in self._select(only)]

    def down(self, only: list[str] | None = None) -> list[str]:
        return [svc.stop() for svc in reversed(self._select(only))]

    def status(self, only: list[str] | None = None) -> list[ServiceStatus]:
        return [svc.status() for svc in self._select(only)]
