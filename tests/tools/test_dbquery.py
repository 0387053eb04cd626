"""The db-query tool: named, parameterised, read-only queries on the configured SQLite file."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from agentd.errors import PolicyError, ToolError
from tests.tools.support import Harness, config

QUERIES = '''
[customer_by_email]
description = "The customer with this e-mail address"
sql = "SELECT id, name, email FROM customers WHERE email = :email"
params = { email = "string" }

[big_customers]
sql = "SELECT name FROM customers WHERE spend_usd >= :min_usd ORDER BY name"
params = { min_usd = "number" }
max_rows = 2

[slow]
sql = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
'''


def _setup(tmp_path: Path, queries: str = QUERIES, **overrides: object) -> tuple[Harness, object, Path]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    db = tmp_path / "crm.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, email TEXT, spend_usd REAL)")
        conn.executemany("INSERT INTO customers (name, email, spend_usd) VALUES (?, ?, ?)", [
            ("Acme", "ap@acme.example", 900.0), ("Globex", "ap@globex.example", 50.0),
            ("Initech", "ap@initech.example", 1200.0), ("Umbrella", "ap@umbrella.example", 3000.0)])
    conn.close()
    values = {"allowed_services": frozenset({"db-query"}), "db_path": str(db), **overrides}
    cfg = config(tmp_path / "home", **values)
    (cfg.data_dir / "queries.toml").write_text(queries)
    harness = Harness(cfg)
    return harness, harness.context(allowed={"db-query"}), db


async def test_a_named_query_runs_with_its_parameters(tmp_path: Path) -> None:
    _, ctx, _ = _setup(tmp_path)
    result = await ctx.tool("db-query", query="customer_by_email", params={"email": "ap@globex.example"})
    assert result["rows"] == [{"id": 2, "name": "Globex", "email": "ap@globex.example"}]
    assert result["columns"] == ["id", "name", "email"] and result["truncated"] is False


async def test_rows_beyond_max_rows_are_cut_and_flagged(tmp_path: Path) -> None:
    _, ctx, _ = _setup(tmp_path)
    result = await ctx.tool("db-query", query="big_customers", params={"min_usd": 100})
    assert [r["name"] for r in result["rows"]] == ["Acme", "Initech"] and result["truncated"] is True


@pytest.mark.parametrize("params", [
    {"query": "drop_everything", "params": {}},
    {"query": "customer_by_email", "params": {}},
    {"query": "customer_by_email", "params": {"email": 5}},
    {"query": "customer_by_email", "params": {"email": "a", "extra": "b"}},
    {"query": "customer_by_email", "sql": "DELETE FROM customers"},
])
async def test_unknown_queries_raw_sql_and_wrong_parameters_are_refused(tmp_path: Path, params: dict) -> None:
    harness, ctx, db = _setup(tmp_path)
    with pytest.raises(PolicyError):
        await harness.box.call(ctx._core, "db-query", params)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM customers").fetchone() == (4,)
    conn.close()


@pytest.mark.parametrize(("sql", "problem"), [
    ("DELETE FROM customers", "must be a SELECT query"),
    ("SELECT 1; DROP TABLE customers", "single statement"),
    ("SELECT * FROM customers WHERE id = :id", "uses :id but params declares (none)"),
])
async def test_a_queries_file_with_a_write_or_a_bad_query_is_a_clear_error(tmp_path: Path, sql: str,
                                                                           problem: str) -> None:
    _, ctx, _ = _setup(tmp_path, queries=f'[bad]\nsql = "{sql}"\n')
    with pytest.raises(ToolError) as bad:
        await ctx.tool("db-query", query="bad")
    assert bad.value.reason == "db_queries_invalid" and problem in bad.value.detail


async def test_a_query_that_runs_too_long_is_interrupted(tmp_path: Path) -> None:
    _, ctx, _ = _setup(tmp_path, tool_timeout_s=0.3)
    with pytest.raises(ToolError) as slow:
        await ctx.tool("db-query", query="slow")
    assert slow.value.reason in ("db_query_timeout", "tool_timeout")


async def test_missing_configuration_is_a_tool_error_naming_it(tmp_path: Path) -> None:
    _, ctx, _ = _setup(tmp_path, db_path="")
    with pytest.raises(ToolError) as unset:
        await ctx.tool("db-query", query="slow")
    assert "DB_QUERY_PATH is not set" in unset.value.detail
    _, ctx, _ = _setup(tmp_path / "2", db_path=str(tmp_path / "nope.sqlite"))
    with pytest.raises(ToolError) as missing:
        await ctx.tool("db-query", query="slow")
    assert "no such database file" in missing.value.detail


def test_the_offered_schema_and_description_list_the_named_queries(tmp_path: Path) -> None:
    harness, _, _ = _setup(tmp_path)
    [spec] = harness.box.specs(["db-query"])
    assert spec["parameters"]["properties"]["query"]["enum"] == ["big_customers", "customer_by_email", "slow"]
    assert "customer_by_email(email: string)" in spec["description"]
