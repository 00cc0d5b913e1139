"""Throwaway PostgreSQL, Redis and S3-compatible (moto) servers for tests and benchmarks.

``python -m scripts.services run -- CMD...`` starts what ``DATABASE_URL`` / ``REDIS_URL`` /
``AWS_S3_ENDPOINT_URL`` do not already point at, on spare ports in a temporary folder, runs CMD
with those variables set, and stops and deletes the servers afterwards. The S3 server is moto's
server mode (``moto[server]`` in requirements-dev.txt); when it is started here, CMD also gets
dummy ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_DEFAULT_REGION`` unless they are
set (moto accepts any credentials, boto3 wants some). With ``REQUIRE_SERVICES=1`` a service that
cannot be started is an error; otherwise CMD runs without it and the tests that need it are
skipped.

The start functions are also imported by test fixtures that need a server of their own to break
(stop the process, close the port) without touching the machine's shared services.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


class ServiceUnavailable(RuntimeError):
    """The binaries for a throwaway server are not on this machine, or it failed to start."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise ServiceUnavailable(f"nothing answered on port {port} within {timeout:.0f}s")


def postgres_bindir() -> Path:
    """The folder of initdb/pg_ctl: PG_BINDIR, then the newest /usr/lib/postgresql/*/bin, then PATH."""
    candidates = [os.environ.get("PG_BINDIR", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    initdb = shutil.which("initdb")
    candidates.append(str(Path(initdb).parent) if initdb else "")
    for folder in filter(None, candidates):
        if (Path(folder) / "initdb").exists():
            return Path(folder)
    raise ServiceUnavailable("PostgreSQL server binaries (initdb) not found; set PG_BINDIR")


def _as_postgres_user(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root; run its binaries as the 'postgres' user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


@contextmanager
def postgres_server(extra_conf: dict[str, str] | None = None) -> Iterator[str]:
    """A new PostgreSQL cluster on a spare port; yields its URL (superuser 'postgres', trust auth)."""
    bindir = postgres_bindir()
    workdir = Path(tempfile.mkdtemp(prefix="ils-pg-"))
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres", "postgres")
    data, port = workdir / "data", free_port()
    try:
        subprocess.run(
            _as_postgres_user(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "--no-sync",
                    "-E",
                    "UTF8",
                ]
            ),
            check=True,
            capture_output=True,
        )
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(port),
            "unix_socket_directories": f"'{workdir}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            # the index advisor reads pg_stat_statements (metrics/queries/advisor/)
            "shared_preload_libraries": "'pg_stat_statements'",
            "pg_stat_statements.track": "all",
        }
        conf.update(extra_conf or {})
        with (data / "postgresql.conf").open("a") as handle:
            handle.writelines(f"{key} = {value}\n" for key, value in conf.items())
        subprocess.run(
            _as_postgres_user(
                [
                    str(bindir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(workdir / "server.log"),
                    "-w",
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
        )
        yield f"postgres://postgres@127.0.0.1:{port}/postgres"
    except subprocess.CalledProcessError as error:
        raise ServiceUnavailable(
            f"PostgreSQL failed to start: {error.stderr.decode()[-500:]}"
        ) from error
    finally:
        subprocess.run(
            _as_postgres_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class PrimaryWithReplica:
    """A running primary and its streaming replica; the methods break and mend the replica."""

    primary_url: str
    replica_url: str
    bindir: Path
    replica_data: Path
    replica_log: Path

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(
            _as_postgres_user([str(self.bindir / "pg_ctl"), "-D", str(self.replica_data), *args]),
            check=True,
            capture_output=True,
        )

    def _replica_sql(self, sql: str) -> None:
        import psycopg  # only the replica helpers need a client library

        with psycopg.connect(self.replica_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql)

    def stop_replica(self) -> None:
        self._pg_ctl("-m", "fast", "-w", "stop")

    def start_replica(self) -> None:
        self._pg_ctl("-l", str(self.replica_log), "-w", "start")

    def pause_replay(self) -> None:
        self._replica_sql("SELECT pg_wal_replay_pause()")

    def resume_replay(self) -> None:
        self._replica_sql("SELECT pg_wal_replay_resume()")

    def promote_replica(self) -> None:
        self._pg_ctl("-w", "promote")


@contextmanager
def postgres_primary_with_replica() -> Iterator[PrimaryWithReplica]:
    """A new primary cluster and a hot-standby replica streaming from it, on spare ports.

    The replica is a ``pg_basebackup -R`` copy of the primary; both are stopped and their folders
    deleted on exit, whatever the body did to them.
    """
    primary_conf = {
        "wal_level": "replica",
        "max_wal_senders": "5",
        "hot_standby": "on",
        "full_page_writes": "on",  # a base backup's consistency depends on it
    }
    with postgres_server(primary_conf) as primary_url:
        bindir = postgres_bindir()
        workdir = Path(tempfile.mkdtemp(prefix="ils-pg-replica-"))
        if os.geteuid() == 0:
            shutil.chown(workdir, "postgres", "postgres")
        port = free_port()
        replica = PrimaryWithReplica(
            primary_url=primary_url,
            replica_url=f"postgres://postgres@127.0.0.1:{port}/postgres",
            bindir=bindir,
            replica_data=workdir / "data",
            replica_log=workdir / "server.log",
        )
        try:
            subprocess.run(
                _as_postgres_user(
                    [
                        str(bindir / "pg_basebackup"),
                        "-D",
                        str(replica.replica_data),
                        "-R",
                        "-X",
                        "stream",
                        "--no-sync",
                        "-h",
                        "127.0.0.1",
                        "-p",
                        str(urlsplit(primary_url).port),
                        "-U",
                        "postgres",
                    ]
                ),
                check=True,
                capture_output=True,
            )
            with (replica.replica_data / "postgresql.conf").open("a") as handle:
                handle.write(f"port = {port}\nunix_socket_directories = '{workdir}'\n")
            replica.start_replica()
            yield replica
        except subprocess.CalledProcessError as error:
            raise ServiceUnavailable(
                f"PostgreSQL replica failed to start: {error.stderr.decode()[-500:]}"
            ) from error
        finally:
            subprocess.run(
                _as_postgres_user(
                    [
                        str(bindir / "pg_ctl"),
                        "-D",
                        str(replica.replica_data),
                        "-m",
                        "immediate",
                        "stop",
                    ]
                ),
                capture_output=True,
            )
            shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def redis_server() -> Iterator[str]:
    """A new redis-server on a spare port with nothing on disk; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceUnavailable("redis-server not found on PATH")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


def _moto_command() -> list[str]:
    script = Path(sys.executable).parent / "moto_server"
    if script.exists():
        return [str(script)]
    if importlib.util.find_spec("moto") is None:
        raise ServiceUnavailable(
            "moto is not installed (pip install -r requirements-dev.txt for moto[server])"
        )
    return [sys.executable, "-m", "moto.server"]


def _log_tail(log: Path, size: int = 500) -> str:
    try:
        return log.read_text(errors="replace")[-size:].strip() or "(empty log)"
    except OSError:
        return "(no log)"


def _wait_for_http(url: str, process: subprocess.Popen, log: Path, timeout: float = 20.0) -> None:
    """Until GET ``url`` gets any HTTP answer; fails at once if the process exits first."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceUnavailable(
                f"moto_server exited with code {process.returncode}: {_log_tail(log)}"
            )
        try:
            with opener.open(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # an HTTP error status is still an HTTP answer
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    raise ServiceUnavailable(
        f"moto_server did not answer HTTP at {url} within {timeout:.0f}s: {_log_tail(log)}"
    )


@contextmanager
def s3_server() -> Iterator[str]:
    """A new moto S3-compatible HTTP server on a spare port, all in memory; yields its endpoint."""
    command = _moto_command()
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    workdir = Path(tempfile.mkdtemp(prefix="ils-moto-"))
    log = workdir / "server.log"
    with log.open("wb") as log_handle:
        process = subprocess.Popen(
            [*command, "-H", "127.0.0.1", "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log_handle,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_http(f"{endpoint}/", process, log)
        yield endpoint
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


# Set for CMD when the harness starts the S3 server and they are not set already.
S3_DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def run(command: list[str]) -> int:
    required = os.environ.get("REQUIRE_SERVICES") == "1"
    env = dict(os.environ)
    services = (
        ("DATABASE_URL", postgres_server),
        ("REDIS_URL", redis_server),
        ("AWS_S3_ENDPOINT_URL", s3_server),
    )
    with ExitStack() as stack:
        for variable, server in services:
            if env.get(variable):
                continue
            try:
                env[variable] = stack.enter_context(server())
                print(f"[services] {variable}={env[variable]} (throwaway)", file=sys.stderr)
                if variable == "AWS_S3_ENDPOINT_URL":
                    for name, value in S3_DUMMY_CREDENTIALS.items():
                        if not env.get(name):
                            env[name] = value
            except ServiceUnavailable as error:
                if required:
                    print(f"[services] REQUIRE_SERVICES=1 and {variable}: {error}", file=sys.stderr)
                    return 2
                print(f"[services] running without {variable}: {error}", file=sys.stderr)
        return subprocess.call(command, env=env)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] != "run" or argv[1] != "--":
        print("usage: python -m scripts.services run -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    return run(argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
