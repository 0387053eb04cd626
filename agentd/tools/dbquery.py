"""The db-query tool: a named, parameterised, read-only query on the SQLite database DB_QUERY_PATH.

No SQL ever comes from a model or a document. The queries are named in
AGENTD_HOME/data/queries.toml, one table per query:

    [customer_by_email]
    description = "The customer with this e-mail address"
    sql = "SELECT id, name, email FROM customers WHERE email = :email"
    params = { email = "string" }      # string | integer | number | boolean; all required
    max_rows = 20                      # optional, default 100

A query must be one SELECT (or WITH ... SELECT) statement using exactly its declared
`:name` parameters. The database is opened read-only (`mode=ro`), and an authorizer
denies anything but reading while it runs.
"""
from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentd.config import Config
from agentd.errors import ToolError
from agentd.tools.base import Invocation, Tool

FILE = "queries.toml"
DEFAULT_MAX_ROWS = 100
MAX_ROWS_LIMIT = 1000
NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
TYPES = {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean"}
READ_ACTIONS = frozenset({sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION,
                          getattr(sqlite3, "SQLITE_RECURSIVE", 33)})
PROGRESS_EVERY_OPS = 1000


@dataclass(frozen=True)
class Query:
    name: str
    description: str
    sql: str
    params: dict[str, str]
    max_rows: int

    def params_schema(self) -> dict[str, Any]:
        return {"type": "object", "additionalProperties": False, "required": sorted(self.params),
                "properties": {k: {"type": TYPES[v]} for k, v in self.params.items()}}


def _query(name: str, table: Any) -> Query:
    if not NAME.match(name):
        raise ValueError(f"query name {name!r}: use lower-case letters, digits and _")
    if not isinstance(table, dict) or not isinstance(table.get("sql"), str):
        raise ValueError(f"[{name}] needs sql = \"SELECT ...\"")
    sql = table["sql"].strip().rstrip(";").strip()
    if ";" in sql:
        raise ValueError(f"[{name}] must be a single statement")
    if not re.match(r"(?is)^(select|with)\b", sql):
        raise ValueError(f"[{name}] must be a SELECT query")
    params = table.get("params", {})
    if not isinstance(params, dict) or any(v not in TYPES for v in params.values()):
        raise ValueError(f"[{name}] params: each must be one of {', '.join(TYPES)}")
    used = set(PARAM.findall(sql))
    if used != set(params):
        raise ValueError(f"[{name}] the sql uses :{', :'.join(sorted(used)) or '(none)'} "
                         f"but params declares {', '.join(sorted(params)) or '(none)'}")
    max_rows = table.get("max_rows", DEFAULT_MAX_ROWS)
    if not isinstance(max_rows, int) or not 1 <= max_rows <= MAX_ROWS_LIMIT:
        raise ValueError(f"[{name}] max_rows must be from 1 to {MAX_ROWS_LIMIT}")
    return Query(name, str(table.get("description", "")), sql, dict(params), max_rows)


class QueryBook:
    """The named queries file, re-read when it changes."""

    def __init__(self, path: Path):
        self.path = path
        self.queries: dict[str, Query] = {}
        self._stamp: tuple[int, int, int] | None = None

    def load(self) -> dict[str, Query]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise ToolError("db_queries_missing", f"no named queries: create {self.path} "
                                                  "(see agentd/tools/dbquery.py for the format)") from None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp != self._stamp:
            try:
                tables = tomllib.loads(self.path.read_text("utf-8"))
                self.queries = {name: _query(name, table) for name, table in tables.items()}
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, ValueError) as exc:
                raise ToolError("db_queries_invalid", f"{self.path}: {exc}") from None
            self._stamp = stamp
        return self.queries


_books: dict[Path, QueryBook] = {}


def book(config: Config) -> QueryBook:
    path = config.data_dir / FILE
    if path not in _books:
        _books[path] = QueryBook(path)
    return _books[path]


def parameters(config: Config) -> dict[str, Any]:
    """The tool's schema: a known query name and exactly that query's parameters."""
    try:
        queries = book(config).load()
    except ToolError:
        queries = {}
    schema: dict[str, Any] = {
        "type": "object", "additionalProperties": False, "required": ["query"],
        "properties": {"query": {"type": "string", "enum": sorted(queries)} if queries else {"type": "string"},
                       "params": {"type": "object"}},
    }
    if queries:
        schema["allOf"] = [{"if": {"properties": {"query": {"const": q.name}}},
                            "then": {"required": ["params"] if q.params else [],
                                     "properties": {"params": q.params_schema()}}} for q in queries.values()]
    return schema


def describe(config: Config) -> str:
    try:
        queries = book(config).load()
    except ToolError:
        queries = {}
    listed = "; ".join(f"{q.name}({', '.join(f'{k}: {v}' for k, v in q.params.items())})"
                       + (f": {q.description}" if q.description else "") for q in queries.values())
    return ("Run one of the operators' named read-only database queries with its parameters. "
            f"Queries: {listed or 'none configured'}.")


def _authorize(action: int, *_: Any) -> int:
    return sqlite3.SQLITE_OK if action in READ_ACTIONS else sqlite3.SQLITE_DENY


def _cell(value: Any) -> Any:
    return f"<{len(value)} bytes>" if isinstance(value, (bytes, bytearray, memoryview)) else value


def execute(db: Path, query: Query, params: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """Run `query` read-only (blocking: call it in a thread); aborted after `timeout_s`."""
    deadline_s = time.monotonic() + timeout_s
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=min(timeout_s, 5.0))
    try:
        conn.set_authorizer(_authorize)
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline_s), PROGRESS_EVERY_OPS)
        cursor = conn.execute(query.sql, params)
        rows = cursor.fetchmany(query.max_rows + 1)
        columns = [d[0] for d in cursor.description or ()]
    except sqlite3.Error as exc:
        reason = "db_query_timeout" if "interrupted" in str(exc) else "db_query_failed"
        raise ToolError(reason, f"query {query.name}: {exc}") from None
    finally:
        conn.close()
    return {"query": query.name, "columns": columns,
            "rows": [{c: _cell(v) for c, v in zip(columns, row)} for row in rows[:query.max_rows]],
            "row_count": min(len(rows), query.max_rows), "truncated": len(rows) > query.max_rows}


async def run(inv: Invocation) -> dict[str, Any]:
    if not inv.config.db_path:
        raise ToolError("db_unconfigured", "DB_QUERY_PATH is not set: the db-query tool has no database")
    db = Path(inv.config.db_path)
    if not db.is_file():
        raise ToolError("db_missing", f"DB_QUERY_PATH={inv.config.db_path}: no such database file")
    queries = book(inv.config).load()
    query = queries.get(inv.params["query"])
    if query is None:
        raise ToolError("db_unknown_query", f"no named query {str(inv.params['query'])[:64]!r} in {FILE}")
    return await asyncio.to_thread(execute, db, query, dict(inv.params.get("params", {})), inv.timeout_s)


TOOL = Tool(name="db-query", description=describe,
            parameters=parameters, run=run, rate_per_min=120.0)
