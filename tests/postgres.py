"""A real PostgreSQL server for tests (pgserver: no root, no system service), which tests can stop and start."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pgserver
from pgserver._commands import pg_ctl


class Postgres:
    def __init__(self, folder: Path):
        self._server = pgserver.get_server(folder, cleanup_mode="stop")
        self.url = self._server.get_uri()
        self._socket_dir = parse_qs(urlparse(self.url).query)["host"][0]

    def stop(self) -> None:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self._server.pgdata, user=self._server.system_user)

    def start(self) -> None:
        args = ["-w", "-o", '-h ""', "-o", f"-k {self._socket_dir}", "-l", str(self._server.log), "start"]
        pg_ctl(args, pgdata=self._server.pgdata, user=self._server.system_user)

    @contextlib.contextmanager
    def down(self, kill: bool = False):
        """Stopped (SIGKILLed with `kill`) for the block, and started again after it, also when the block fails:
        the tests after it need their database."""
        if kill:
            self.kill()
        else:
            self.stop()
        try:
            yield
        finally:
            self.start()

    def kill(self) -> None:
        """SIGKILL the postmaster and all its children at once, as an OOM kill or a lost node does: no shutdown,
        no checkpoint, connections cut mid-statement. The next start() runs crash recovery."""
        postmaster = int((Path(self._server.pgdata) / "postmaster.pid").read_text().split()[0])
        os.kill(postmaster, signal.SIGSTOP)  # no new backends forked while the family is listed
        family = [postmaster, *_children(postmaster)]
        for pid in family:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in family):
            assert time.monotonic() < deadline, "PostgreSQL's processes were not reaped after SIGKILL"
            time.sleep(0.02)

    def close(self) -> None:
        self._server.cleanup()
        # pgserver stops only the postmaster it started; one started again by start() would outlive the tests.
        if (Path(self._server.pgdata) / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                self.stop()


def _children(parent: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # the command name in parentheses may hold spaces: the fields after its closing one are plain
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    """Until its parent (init) has reaped it: PostgreSQL takes a zombie's pid in postmaster.pid for a live server."""
    return Path(f"/proc/{pid}").exists()


@contextlib.contextmanager
def fresh_database(server_url: str, prefix: str):
    """The URL of a new, empty database on the server, dropped afterwards (tests share one server)."""
    import uuid

    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    name = f"{prefix}_{uuid.uuid4().hex}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield make_conninfo(server_url, dbname=name)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def write_rows(url: str, rows: list) -> None:
    """Migrate the database at `url` and insert prediction `rows` as they are (any created_at): a log with a past."""
    import asyncio

    import psycopg

    from function.prediction_log.schema import PREDICTIONS, migrate

    async def write() -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await migrate(conn)
            for row in rows:
                await conn.execute(PREDICTIONS.insert_sql, row.values())

    asyncio.run(write())
