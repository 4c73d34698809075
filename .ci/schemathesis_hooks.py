"""schemathesis hooks of tollbooth's CI.

A refused request changes nothing: every call is bracketed by a digest of every table of the
database (each table's rows, hashed), and a 4xx answer after which any table differs fails the
check `refused_requests_change_nothing`, naming the tables. Calls run one at a time (`--workers 1`)
and tollbooth runs with its billing job off, so nothing else writes between the two digests.

Every answer's status is also appended to TOLLBOOTH_FUZZ_TALLY, one a line, for the CI summary.

Environment: TOLLBOOTH_DATABASE_URL (`sqlite://FILE` or `postgres://…`, the database tollbooth
serves from) and TOLLBOOTH_FUZZ_TALLY (a file).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import threading

import schemathesis

DATABASE_URL = os.environ["TOLLBOOTH_DATABASE_URL"]
TALLY = os.environ["TOLLBOOTH_FUZZ_TALLY"]

_calls = threading.local()


# What each gateway's sender was told, refused bodies included (GET /v1/gateways/{id} shows it),
# written in the background every second: it changes after a refusal by design.
TOLD = "gateway_ingest_stats"


class Psql:
    """One psql session kept open for the whole run: a digest costs a query, not a connection."""

    def __init__(self, url: str):
        self.process = subprocess.Popen(
            ["psql", url, "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        tables = self.query(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1"
        )
        self.digest_sql = " UNION ALL ".join(
            f"SELECT '{table}', md5(coalesce(string_agg(r::text, E'\\n' ORDER BY r::text), '')) "
            f'FROM "{table}" r'
            for table in tables
            if table != TOLD
        )

    def query(self, sql: str) -> list[str]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{sql};\n\\echo __done__\n")
        self.process.stdin.flush()
        lines = []
        while (line := self.process.stdout.readline()) != "__done__\n":
            if not line:
                raise RuntimeError("psql ended; its error is above")
            lines.append(line.rstrip("\n"))
        return [line for line in lines if line]


_psql: Psql | None = None


def digest() -> dict[str, str]:
    """Each table's name and a hash of all its rows."""
    global _psql
    if DATABASE_URL.startswith("sqlite:"):
        path = DATABASE_URL.removeprefix("sqlite://").split("?")[0]
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            tables = [
                name
                for (name,) in connection.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
                )
            ]
            digests = {}
            for table in tables:
                if table == TOLD:
                    continue
                rows = sorted(repr(row) for row in connection.execute(f'SELECT * FROM "{table}"'))
                digests[table] = hashlib.sha256("\n".join(rows).encode()).hexdigest()
            return digests
        finally:
            connection.close()
    if _psql is None:
        _psql = Psql(DATABASE_URL)
    return dict(line.split("|", 1) for line in _psql.query(_psql.digest_sql))


@schemathesis.hook
def before_call(context, case, kwargs):
    _calls.before = digest()


@schemathesis.hook
def after_call(context, case, response):
    before = getattr(_calls, "before", None)
    after = digest()
    changed = sorted(
        table for table in set(after) | set(before or {}) if (before or {}).get(table) != after.get(table)
    )
    if 400 <= response.status_code < 500 and changed:
        _calls.violation = (id(response), changed)
    with open(TALLY, "a", encoding="utf-8") as tally:
        tally.write(f"{response.status_code} {case.method} {case.path}\n")


@schemathesis.check
def refused_requests_change_nothing(ctx, response, case):
    """A 4xx answer leaves every table as it was."""
    violation = getattr(_calls, "violation", None)
    if violation is not None and violation[0] == id(response):
        raise AssertionError(
            f"answered {response.status_code}, yet these tables changed: {', '.join(violation[1])}"
        )
