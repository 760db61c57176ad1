"""Real servers for the tests: a PostgreSQL cluster and NATS JetStream servers, each started in a
temporary directory.

The cluster listens on 127.0.0.1 only, on a free port, with a password; it is created once per
test session and stopped at its end. PostgreSQL refuses to run as root, so under root the cluster
belongs to the `postgres` user of the Debian package. Without the server binaries the tests that
need it are skipped, except in CI (`CI` or `DRONEWATCH_REQUIRE_SERVERS` set), where that fails.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ports import free_port

PG_USER = "dronewatch"


def _need(what: str, package: str) -> None:
    message = f"{what} is not installed (Debian package {package}; scripts/test installs it)"
    if os.environ.get("CI") or os.environ.get("DRONEWATCH_REQUIRE_SERVERS"):
        pytest.fail(message)
    pytest.skip(message)


def _pg_bin() -> Path | None:
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return versions[-1].parent if versions else None


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A running PostgreSQL server: the URL of its `postgres` maintenance database."""
    bindir = _pg_bin()
    if bindir is None:
        _need("PostgreSQL", "postgresql")
        return
    as_root = os.geteuid() == 0
    run_as: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix="dronewatch-pg-"))
    if as_root:
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            _need("the postgres system user", "postgresql")
            return
        os.chown(workdir, pw.pw_uid, pw.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    data = workdir / "data"
    password = secrets.token_hex(16)
    pwfile = workdir / "pw"
    pwfile.write_text(password)
    if as_root:
        os.chown(pwfile, pw.pw_uid, pw.pw_gid)
    port = free_port()
    log = workdir / "server.log"

    def run(*cmd: str) -> None:
        proc = subprocess.run([*run_as, *cmd], capture_output=True, text=True)
        if proc.returncode != 0:
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}\n{tail}")

    run(
        str(bindir / "initdb"),
        "-D",
        str(data),
        "-U",
        PG_USER,
        "--pwfile",
        str(pwfile),
        "-A",
        "scram-sha-256",
        "-E",
        "UTF8",
        "--no-sync",
    )
    run(
        str(bindir / "pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(log),
        "-w",
        "-t",
        "30",
        "-o",
        f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={workdir} "
        "-c fsync=off -c full_page_writes=off",
        "start",
    )
    try:
        url = f"postgresql+psycopg://{PG_USER}:{password}@127.0.0.1:{port}/postgres"
        _wait(url)
        yield url
    finally:
        subprocess.run(
            [*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
            capture_output=True,
        )
        shutil.rmtree(workdir, ignore_errors=True)


def _wait(url: str) -> None:
    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    deadline = time.monotonic() + 30
    while True:
        try:
            with psycopg.connect(dsn, connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture
def pg_db_url(postgres_url: str) -> Iterator[str]:
    """A fresh, empty database on the test server for one test; dropped afterwards."""
    import psycopg

    name = "dw_" + uuid.uuid4().hex[:12]
    admin = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class NatsServer:
    """A nats-server with JetStream on loopback, storing in its own temporary directory."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        self._log = (self.workdir / "server.log").open("ab")
        self.proc = subprocess.Popen(
            [binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        deadline = time.monotonic() + 15
        import socket

        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        log = (self.workdir / "server.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"nats-server did not start:\n{log}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self._log.close()


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    """A fresh JetStream server for one test (its stream starts empty)."""
    if not (shutil.which("nats-server") or Path("/usr/sbin/nats-server").exists()):
        _need("nats-server", "nats-server")
    workdir = Path(tempfile.mkdtemp(prefix="dronewatch-nats-"))
    server = NatsServer(workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
