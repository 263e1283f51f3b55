"""A real PostgreSQL server for tests and benches: a fresh cluster (``initdb``) in a temp dir,
TCP on 127.0.0.1 and a free port only (no Unix socket), a bounded wait until it accepts
connections, stopped by PID.

The server binary runs as our own child (``postgres -D ...``, not ``pg_ctl start``, which
daemonizes it): it then gets PR_SET_PDEATHSIG like every process the tests start and cannot
outlive a crashed test run. Debian keeps the binaries off PATH, under
``/usr/lib/postgresql/<version>/bin`` (the ``postgresql`` package: see .ci/run). PostgreSQL
refuses to run as root, so under root (CI) initdb and the server run as the ``postgres`` user
the package creates (``setpriv``, which execs: the PID stays the server's).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import tempfile
from pathlib import Path

from services.processes import ManagedProcess, free_port, wait_until

START_TIMEOUT = 60.0  # ~1-2 s idle; a loaded CI machine is much slower
USER = "technoshare"  # the cluster's superuser (trust auth on 127.0.0.1 only)


def pg_bin(name: str) -> str:
    """The PostgreSQL program ``name``: on PATH, else the newest Debian install."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if not candidates:
        raise RuntimeError(f"PostgreSQL's {name} not found (apt-get install postgresql)")
    return candidates[-1]


def _as_postgres_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    # --pdeathsig: a change of user clears the death signal ManagedProcess set
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups",
            "--pdeathsig=TERM", *argv]  # fmt: skip


class PostgresServer:
    """``durable=False`` (tests): no fsync, a crash may lose the cluster, which is thrown away
    anyway. The bench runs it durable (PostgreSQL's defaults), like a real deployment."""

    def __init__(self, log_dir: Path, *, durable: bool = True) -> None:
        self.log_dir = log_dir
        self.durable = durable
        self.port = free_port()
        # not under log_dir: pytest's tmp dirs are 0700 root, which the postgres user cannot enter
        self.data = Path(tempfile.mkdtemp(prefix="ts-pg-"))
        self.proc: ManagedProcess | None = None

    @property
    def url(self) -> str:
        """The SQLAlchemy URL MLflow takes (``--backend-store-uri``)."""
        return f"postgresql+psycopg2://{USER}@127.0.0.1:{self.port}/postgres"

    def start(self) -> PostgresServer:
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.data, pw.pw_uid, pw.pw_gid)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        init = ManagedProcess(
            "initdb",
            _as_postgres_user(
                [
                    pg_bin("initdb"),
                    "-D",
                    str(self.data / "db"),
                    "-U",
                    USER,
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ]
            ),  # fmt: skip
            env,
            self.log_dir / "initdb.log",
        )
        init.proc.wait(START_TIMEOUT)
        if init.proc.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{init.log()[-3000:]}")
        options = ["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="]
        if not self.durable:
            options += ["-c", "fsync=off", "-c", "synchronous_commit=off"]
        self.proc = ManagedProcess(
            f"postgres-{self.port}",
            _as_postgres_user(
                [pg_bin("postgres"), "-D", str(self.data / "db"), "-p", str(self.port), *options]
            ),
            env,
            self.log_dir / f"postgres-{self.port}.log",
        )
        wait_until(self._ready, START_TIMEOUT, "postgres accepting connections", 0.1)
        return self

    def _ready(self) -> bool:
        import psycopg2

        assert self.proc is not None
        if not self.proc.alive():
            raise RuntimeError(f"postgres exited:\n{self.proc.log()[-3000:]}")
        try:
            psycopg2.connect(
                host="127.0.0.1", port=self.port, user=USER, dbname="postgres", connect_timeout=1
            ).close()
            return True
        except psycopg2.OperationalError:
            return False

    def stop(self) -> None:
        """SIGTERM (a "smart" shutdown that waits for clients), then SIGKILL to the group."""
        if self.proc is not None:
            self.proc.stop(timeout=10)
            self.proc = None
        shutil.rmtree(self.data, ignore_errors=True)
