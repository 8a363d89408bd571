"""Fixtures and helpers for the end-to-end suite: real apps, the real `tandem` binary, and
private Redis servers, all started by the tests on free loopback ports and stopped by them.

Every process is started in a session of its own so that a test can stop it — and the app
`tandem run` starts under it, which sits in its own process group — without touching
anything else on the machine. Output goes to files under the test's tmp_path; a failing
test prints the tail of each.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
E2E = Path(__file__).resolve().parent
APPS = E2E / "apps"
EXAMPLES = REPO / "examples"

TANDEM_BIN = Path(os.environ.get("TANDEM_BIN", REPO / "target" / "debug" / "tandem"))
if not TANDEM_BIN.is_absolute():
    TANDEM_BIN = REPO / TANDEM_BIN

# The interpreter running pytest is the one with the SDK installed: apps run on it too.
PYTHON = sys.executable

# Variables a developer's shell may carry that would change what the sidecar or the SDK do.
_SCRUBBED = (
    "DAPR_API_TOKEN",
    "APP_API_TOKEN",
    "DAPR_HTTP_PORT",
    "DAPR_GRPC_PORT",
    "DAPR_HTTP_ENDPOINT",
    "DAPR_GRPC_ENDPOINT",
    "APP_ID",
    "APP_PORT",
    "TANDEM_HOME",
)


# ---------------------------------------------------------------------------------------
# small helpers


def free_port() -> int:
    """A port nothing listens on right now (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.1):
    """Polls `condition` until it returns something truthy; fails the test after `timeout`."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            result = condition()
            if result:
                return result
        except Exception as error:  # noqa: BLE001 - a probe failing just means "not yet"
            last_error = error
        time.sleep(interval)
    suffix = f" (last error: {last_error!r})" if last_error else ""
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}{suffix}")


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def redis_command(port: int, *args: str | bytes | int, timeout: float = 2.0,
                  host: str = "127.0.0.1"):
    """Sends one command to Redis in its wire protocol (RESP) and returns the decoded reply.
    Small on purpose: the tests only need PING, XLEN, XPENDING-like calls and SHUTDOWN."""
    parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    request = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(request)
        reader = sock.makefile("rb")
        return _read_reply(reader)


def _read_reply(reader):
    line = reader.readline()
    if not line:
        raise ConnectionError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(f"redis error: {rest.decode()}")
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data = reader.read(size + 2)[:-2]
        return data.decode(errors="replace")
    if kind == b"*":
        size = int(rest)
        return None if size < 0 else [_read_reply(reader) for _ in range(size)]
    raise RuntimeError(f"unexpected redis reply {line!r}")


def write_component(directory: Path, file_name: str, name: str, type_: str,
                    metadata: dict[str, str] | None = None, extra: str = "") -> Path:
    """Writes a Dapr Component resource file (plain values only) and returns its path."""
    lines = [
        "apiVersion: dapr.io/v1alpha1",
        "kind: Component",
        "metadata:",
        f"  name: {name}",
        "spec:",
        f"  type: {type_}",
        "  version: v1",
    ]
    if metadata:
        lines.append("  metadata:")
        for key, value in metadata.items():
            lines += [f"  - name: {key}", f"    value: {json.dumps(str(value))}"]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / file_name
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


# ---------------------------------------------------------------------------------------
# processes


def _children_by_parent() -> dict[int, list[int]]:
    """pid -> child pids, read from /proc (no psutil needed)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces: parse after the last ')'.
        fields = stat[stat.rindex(b")") + 2:].split()
        ppid = int(fields[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def descendants(pid: int) -> list[int]:
    tree = _children_by_parent()
    found, stack = [], [pid]
    while stack:
        for child in tree.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


class Proc:
    """A process started by a test, in a session of its own, output in a file."""

    def __init__(self, name: str, args: list[str], cwd: Path, env: dict[str, str], log: Path):
        self.name = name
        self.args = args
        self.log = log
        self._log_file = open(log, "wb")
        self.popen = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.popen.pid
        self._groups: set[int] = {self.pid}
        self._finished = False  # once reaped, its group ids may be reused: never signal them

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait_for(self, text: str, timeout: float = 20.0) -> None:
        """Waits until `text` appears in the output; fails early if the process exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if not self.alive():
                if text in self.output():
                    return
                pytest.fail(f"{self.name} exited ({self.popen.returncode}) before printing "
                            f"{text!r}; its output:\n{self.tail()}")
            time.sleep(0.1)
        pytest.fail(f"timed out after {timeout:.0f}s waiting for {text!r} from {self.name}; "
                    f"its output:\n{self.tail()}")

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} still running after {timeout:.0f}s; its output:\n{self.tail()}")

    def _collect_groups(self) -> set[int]:
        """The process groups of this process and everything under it: `tandem run` puts
        the app in a group of its own, so killing tandem's group alone would orphan it."""
        for pid in [self.pid, *descendants(self.pid)]:
            pgid = _pgid(pid)
            if pgid is not None:
                self._groups.add(pgid)
        return self._groups

    def kill(self) -> None:
        """SIGKILL for the process and all its groups at once: a crash, nothing cleaned up."""
        if self._finished:
            return
        groups = self._collect_groups()
        # Its own group first: a crashed host's sidecar must not outlive its app by the
        # moment between two signals and answer an in-flight call with the app's death.
        for pgid in sorted(groups, key=lambda pgid: pgid != self.pid):
            _signal_group(pgid, signal.SIGKILL)
        self._reap(5.0)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM (tandem stops the app, then itself), then SIGKILL whatever is left."""
        if self._finished:
            return
        groups = self._collect_groups()
        if self.alive():
            _signal_group(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        for pgid in groups:
            if _group_alive(pgid):
                _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and any(_group_alive(g) for g in groups):
            time.sleep(0.05)
        for pgid in groups:
            if _group_alive(pgid):
                _signal_group(pgid, signal.SIGKILL)
        self._reap(5.0)

    def _reap(self, timeout: float) -> None:
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        self._finished = True
        self._log_file.close()


class Sidecar:
    """What a test needs to know about one running `tandem run` / `tandem sidecar`."""

    def __init__(self, proc: Proc, http_port: int, grpc_port: int, app_port: int | None):
        self.proc = proc
        self.http_port = http_port
        self.grpc_port = grpc_port
        self.app_port = app_port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def metadata(self, headers: dict | None = None) -> dict:
        response = requests.get(f"{self.url}/v1.0/metadata", headers=headers, timeout=5)
        response.raise_for_status()
        return response.json()

    def publish(self, pubsub: str, topic: str, data, headers: dict | None = None) -> requests.Response:
        return requests.post(f"{self.url}/v1.0/publish/{pubsub}/{topic}", json=data,
                             headers=headers, timeout=10)

    def wait_healthy(self, timeout: float = 20.0) -> None:
        def healthy():
            if not self.proc.alive():
                pytest.fail(f"{self.proc.name} exited ({self.proc.popen.returncode}); "
                            f"its output:\n{self.proc.tail()}")
            return requests.get(f"{self.url}/v1.0/healthz", timeout=1).status_code == 204

        wait_until(healthy, timeout, f"{self.proc.name} to be healthy")

    def wait_subscribed(self, pubsub: str, topic: str, timeout: float = 20.0,
                        headers: dict | None = None) -> None:
        def subscribed():
            if not self.proc.alive():
                pytest.fail(f"{self.proc.name} exited ({self.proc.popen.returncode}); "
                            f"its output:\n{self.proc.tail()}")
            subscriptions = self.metadata(headers).get("subscriptions", [])
            return any(s.get("pubsubname") == pubsub and s.get("topic") == topic
                       for s in subscriptions)

        wait_until(subscribed, timeout, f"{self.proc.name} to subscribe to {pubsub}/{topic}")


class Tandem:
    """Starts `tandem` processes for one test and stops every one of them afterwards."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.home = tmp_path / "tandem-home"
        self.home.mkdir(exist_ok=True)
        self.procs: list[Proc] = []
        self._count = 0

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
        env["TANDEM_HOME"] = str(self.home)
        env["PYTHONUNBUFFERED"] = "1"
        # `uvicorn` and friends resolve to the test environment's copies.
        env["PATH"] = os.path.dirname(PYTHON) + os.pathsep + env.get("PATH", "")
        env.update(extra or {})
        return env

    def start(self, name: str, args: list[str], cwd: Path | None = None,
              env: dict[str, str] | None = None) -> Proc:
        self._count += 1
        log = self.tmp_path / f"{self._count:02d}-{name}.log"
        proc = Proc(name, args, cwd or self.tmp_path, self.env(env), log)
        self.procs.append(proc)
        return proc

    def run(self, name: str, app_cmd: list[str], *, app_id: str, app_port: int | None = None,
            resources: Iterable[Path] = (), cwd: Path | None = None,
            env: dict[str, str] | None = None, extra_args: Iterable[str] = ()) -> Sidecar:
        """`tandem run --app-id ID [--app-port P] -H http -G grpc [-d dir]... -- app_cmd`."""
        http_port, grpc_port = free_port(), free_port()
        args = [str(TANDEM_BIN), "run", "--app-id", app_id,
                "--dapr-http-port", str(http_port), "--dapr-grpc-port", str(grpc_port)]
        if app_port is not None:
            args += ["--app-port", str(app_port)]
        for path in resources:
            args += ["--resources-path", str(path)]
        args += [*extra_args, "--", *app_cmd]
        return Sidecar(self.start(name, args, cwd, env), http_port, grpc_port, app_port)

    def sidecar(self, name: str, *, app_id: str, resources: Iterable[Path] = (),
                cwd: Path | None = None, env: dict[str, str] | None = None,
                extra_args: Iterable[str] = ()) -> Sidecar:
        """`tandem sidecar` alone, with no app."""
        http_port, grpc_port = free_port(), free_port()
        args = [str(TANDEM_BIN), "sidecar", "--app-id", app_id,
                "--dapr-http-port", str(http_port), "--dapr-grpc-port", str(grpc_port)]
        for path in resources:
            args += ["--resources-path", str(path)]
        args += list(extra_args)
        return Sidecar(self.start(name, args, cwd, env), http_port, grpc_port, None)

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


# ---------------------------------------------------------------------------------------
# fixtures


# No test may hang the suite: each has its own waits with timeouts, and this is the backstop
# (pytest-timeout; the fixtures' teardown still runs and stops what the test started).
TEST_TIMEOUT = 180


def pytest_collection_modifyitems(items):
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(TEST_TIMEOUT, method="signal"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="session", autouse=True)
def _tandem_binary():
    if not TANDEM_BIN.is_file():
        pytest.exit(f"no tandem binary at {TANDEM_BIN}: run `cargo build` or set TANDEM_BIN",
                    returncode=2)


@pytest.fixture
def tandem(tmp_path, request):
    """Starts tandem processes for the test; stops them all (and their apps) at the end.
    When the test failed, each process's output is printed."""
    launcher = Tandem(tmp_path)
    yield launcher
    launcher.stop_all()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for proc in launcher.procs:
            print(f"\n----- {proc.name}: {' '.join(proc.args)}\n{proc.tail(60)}")


@pytest.fixture
def redis_server(tmp_path):
    """A private redis-server on a free loopback port, nothing saved to disk. Yields its port."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (scripts/test installs it with apt)")
    port = free_port()
    workdir = tmp_path / "redis"
    workdir.mkdir()
    log = open(workdir / "redis.log", "wb")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir), "--daemonize", "no"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        def pong():
            if process.poll() is not None:
                pytest.fail(f"redis-server exited: {(workdir / 'redis.log').read_text()}")
            return redis_command(port, "PING", timeout=0.5) == "PONG"

        wait_until(pong, 10, "redis-server to answer PING", interval=0.05)
        yield port
    finally:
        _signal_group(process.pid, signal.SIGKILL)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        log.close()


@pytest.fixture
def rabbitmq_server(tmp_path):
    """A private RabbitMQ node (Debian's rabbitmq-server) on free loopback ports, its files
    under tmp_path, killed with its whole process group afterwards. Yields its AMQP URL."""
    script = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
    if not script.exists():
        pytest.fail("rabbitmq-server is not installed (scripts/test installs it with apt)")
    port, dist_port = free_port(), free_port()
    workdir = tmp_path / "rabbitmq"
    workdir.mkdir()
    (workdir / "rabbitmq.conf").write_text(
        f"listeners.tcp.default = 127.0.0.1:{port}\nloopback_users = none\n")
    (workdir / "enabled_plugins").write_text("[].\n")
    (workdir / "env.conf").write_text("")
    env = dict(os.environ,
               HOME=str(workdir),
               RABBITMQ_NODENAME=f"tandem-e2e-{port}@localhost",
               RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
               RABBITMQ_NODE_PORT=str(port),
               RABBITMQ_DIST_PORT=str(dist_port),
               RABBITMQ_MNESIA_BASE=str(workdir / "mnesia"),
               RABBITMQ_LOG_BASE=str(workdir / "log"),
               RABBITMQ_CONFIG_FILE=str(workdir / "rabbitmq"),
               RABBITMQ_ENABLED_PLUGINS_FILE=str(workdir / "enabled_plugins"),
               RABBITMQ_CONF_ENV_FILE=str(workdir / "env.conf"),
               RABBITMQ_PID_FILE=str(workdir / "pid"),
               ERL_EPMD_ADDRESS="127.0.0.1")
    log = open(workdir / "server.log", "wb")
    process = subprocess.Popen([str(script)], env=env, stdin=subprocess.DEVNULL, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def listening():
            if process.poll() is not None:
                pytest.fail(f"rabbitmq-server exited: {(workdir / 'server.log').read_text()}")
            return port_open(port)

        wait_until(listening, 60, "rabbitmq-server to listen", interval=0.1)
        yield f"amqp://guest:guest@127.0.0.1:{port}"
    finally:
        _signal_group(process.pid, signal.SIGKILL)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        log.close()


@contextlib.contextmanager
def _server(name: str, args: list[str], port: int, workdir: Path, timeout: float = 20):
    """Runs a server process in a session of its own until the block ends, then kills its
    whole process group. Waits until it listens on `port`."""
    workdir.mkdir(parents=True, exist_ok=True)
    log = open(workdir / f"{name}.log", "wb")
    process = subprocess.Popen(args, cwd=workdir, stdin=subprocess.DEVNULL, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def listening():
            if process.poll() is not None:
                pytest.fail(f"{name} exited: {(workdir / f'{name}.log').read_text()}")
            return port_open(port)

        wait_until(listening, timeout, f"{name} to listen on {port}", interval=0.05)
        yield
    finally:
        _signal_group(process.pid, signal.SIGKILL)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        log.close()


@pytest.fixture
def mosquitto_server(tmp_path):
    """A private Mosquitto on a free loopback port, persisting its sessions under tmp_path.
    Yields its port."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        pytest.fail("mosquitto is not installed (scripts/test installs it with apt)")
    port, workdir = free_port(), tmp_path / "mosquitto"
    workdir.mkdir()
    # As root, Mosquitto would switch to its own user, who cannot write tmp_path.
    as_root = "user root\n" if os.geteuid() == 0 else ""
    (workdir / "mosquitto.conf").write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
        f"persistence_location {workdir}/\n{as_root}")
    with _server("mosquitto", [binary, "-c", str(workdir / "mosquitto.conf")], port, workdir):
        yield port


@pytest.fixture
def nats_server(tmp_path):
    """A private nats-server with JetStream on a free loopback port, its store under
    tmp_path. Yields its port."""
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not Path(binary).exists():
        pytest.fail("nats-server is not installed (scripts/test installs it with apt)")
    port, workdir = free_port(), tmp_path / "nats"
    with _server("nats-server", [binary, "-a", "127.0.0.1", "-p", str(port), "-js",
                                 "-sd", str(workdir / "store")], port, workdir):
        yield port


@pytest.fixture
def moto_server(tmp_path):
    """A private AWS emulator (moto_server, installed into the test environment from
    PyPI) on a free loopback port. Yields its port."""
    binary = Path(PYTHON).parent / "moto_server"
    if not binary.exists():
        pytest.fail("moto_server is not installed (scripts/test installs moto[server] into .venv)")
    port = free_port()
    with _server("moto", [str(binary), "-H", "127.0.0.1", "-p", str(port)], port,
                 tmp_path / "moto", timeout=60):
        yield port


@pytest.fixture
def kafka_server(tmp_path):
    """A private Kafka-protocol broker (tansu, which scripts/test unpacks into .venv/bin
    from PyPI) on a free loopback port, keeping everything in memory. Yields its port."""
    binary = Path(PYTHON).parent / "tansu"
    if not binary.exists():
        pytest.fail("tansu is not installed (scripts/test unpacks it into .venv/bin)")
    port = free_port()
    listener = f"tcp://127.0.0.1:{port}"
    with _server("tansu", [str(binary), "broker", "--listener-url", listener,
                           "--advertised-listener-url", listener], port, tmp_path / "kafka"):
        yield port


@contextlib.contextmanager
def postgres_at(address: str = "127.0.0.1"):
    """A private PostgreSQL cluster in a temporary folder, listening on `address` (and
    trusting every client of that address's /24), stopped at once and removed afterwards.
    Yields its port. initdb and postgres refuse to run as root: as root they run as the
    `postgres` user, which is why the folder is not under pytest's (root-only) tmp_path."""
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    initdb = bins[-1] if bins else shutil.which("initdb")
    if initdb is None:
        pytest.fail("PostgreSQL's initdb is not installed (scripts/test installs it with apt)")
    bin_dir = Path(initdb).parent
    as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    workdir = Path(tempfile.mkdtemp(prefix="tandem-e2e-pg-"))
    data, port = workdir / "data", free_port()
    if as_owner:
        subprocess.run(["chown", "-R", "postgres:", str(workdir)], check=True)
    subprocess.run([*as_owner, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust",
                    "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"],
                   check=True, capture_output=True)
    subnet = ".".join(address.split(".")[:3]) + ".0/24"
    with open(data / "pg_hba.conf", "a") as hba:
        hba.write(f"host all all {subnet} trust\n")
    options = (f"-p {port} -h {address} -k {workdir} -c fsync=off "
               "-c full_page_writes=off -c max_connections=200")
    ctl = [*as_owner, str(bin_dir / "pg_ctl"), "-D", str(data)]
    started = subprocess.run([*ctl, "start", "-l", str(workdir / "server.log"), "-w", "-t", "60",
                              "-o", options], capture_output=True, text=True)
    if started.returncode != 0:
        log = (workdir / "server.log").read_text(errors="replace") if (workdir / "server.log").exists() else ""
        pytest.fail(f"PostgreSQL did not start: {started.stdout}{started.stderr}\n{log}")
    try:
        yield port
    finally:
        subprocess.run([*ctl, "stop", "-m", "immediate", "-w"], capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)
