"""Read-only SQLite backend for mcp-gateway examples.

Run over stdio: ``python sqlite_server.py [--db PATH]`` (or set ``SQLITE_DB_PATH``).
The default database is created with sample data on first start.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any
from urllib.request import pathname2url

from pydantic import Field

from fastmcp import FastMCP
from fastmcp.exceptions import ToolError

DEFAULT_DB = Path(__file__).parent / "data" / "sample.db"
# A runaway query (e.g. an unbounded recursive CTE) would otherwise pin a worker thread forever.
QUERY_DEADLINE_SECONDS = 10.0

SAMPLE_SCHEMA = """
CREATE TABLE customers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE,
    city TEXT NOT NULL,
    country TEXT NOT NULL,
    signup_date TEXT NOT NULL
);
CREATE TABLE products (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    category TEXT NOT NULL,
    price_usd REAL NOT NULL CHECK (price_usd >= 0),
    stock INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    product_id INTEGER NOT NULL REFERENCES products(id),
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    order_date TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'shipped', 'delivered', 'cancelled'))
);
CREATE INDEX idx_orders_customer ON orders(customer_id);
CREATE INDEX idx_orders_product ON orders(product_id);
"""

SAMPLE_CUSTOMERS = [
    (1, "Alice Martin", "alice.martin@example.com", "Lyon", "France", "2023-01-14"),
    (2, "Bruno Costa", "bruno.costa@example.com", "Porto", "Portugal", "2023-02-03"),
    (3, "Chen Wei", "chen.wei@example.com", "Singapore", "Singapore", "2023-02-27"),
    (4, "Dana Brooks", "dana.brooks@example.com", "Denver", "USA", "2023-03-19"),
    (5, "Emeka Okafor", "emeka.okafor@example.com", "Lagos", "Nigeria", "2023-04-08"),
    (6, "Fatima Zahra", "fatima.zahra@example.com", "Casablanca", "Morocco", "2023-05-22"),
    (7, "Gustav Lind", "gustav.lind@example.com", "Uppsala", "Sweden", "2023-06-11"),
    (8, "Hana Sato", "hana.sato@example.com", "Osaka", "Japan", "2023-07-02"),
    (9, "Ivan Petrov", "ivan.petrov@example.com", "Sofia", "Bulgaria", "2023-08-16"),
    (10, "Julia Novak", "julia.novak@example.com", "Brno", "Czechia", "2023-09-05"),
    (11, "Kofi Mensah", "kofi.mensah@example.com", "Accra", "Ghana", "2023-10-21"),
    (12, "Laura Gomez", "laura.gomez@example.com", "Austin", "USA", "2023-11-30"),
]

SAMPLE_PRODUCTS = [
    (1, "Mechanical keyboard", "peripherals", 89.00, 42),
    (2, "Wireless mouse", "peripherals", 29.50, 120),
    (3, "27-inch monitor", "displays", 249.99, 15),
    (4, "USB-C dock", "accessories", 129.00, 30),
    (5, "Noise-cancelling headphones", "audio", 199.00, 25),
    (6, "Webcam 1080p", "peripherals", 59.90, 64),
    (7, "Laptop stand", "accessories", 39.00, 80),
    (8, "Portable SSD 1TB", "storage", 109.00, 55),
    (9, "Desk lamp", "office", 34.75, 37),
    (10, "Ergonomic chair", "office", 329.00, 8),
    (11, "HDMI cable 2m", "accessories", 9.99, 300),
    (12, "Bluetooth speaker", "audio", 74.50, 0),
]

SAMPLE_ORDERS = [
    (1, 1, 1, 1, "2024-01-05", "delivered"),
    (2, 1, 11, 2, "2024-01-05", "delivered"),
    (3, 2, 3, 1, "2024-01-18", "delivered"),
    (4, 3, 5, 1, "2024-02-02", "delivered"),
    (5, 4, 10, 1, "2024-02-14", "delivered"),
    (6, 4, 9, 2, "2024-02-14", "delivered"),
    (7, 5, 2, 3, "2024-03-01", "delivered"),
    (8, 6, 8, 1, "2024-03-09", "cancelled"),
    (9, 7, 4, 1, "2024-03-27", "delivered"),
    (10, 8, 6, 1, "2024-04-11", "delivered"),
    (11, 8, 7, 1, "2024-04-11", "delivered"),
    (12, 9, 12, 2, "2024-05-03", "cancelled"),
    (13, 10, 3, 2, "2024-05-20", "delivered"),
    (14, 11, 1, 1, "2024-06-07", "delivered"),
    (15, 12, 5, 1, "2024-06-18", "shipped"),
    (16, 2, 8, 2, "2024-07-01", "shipped"),
    (17, 3, 11, 5, "2024-07-04", "delivered"),
    (18, 5, 4, 1, "2024-07-15", "shipped"),
    (19, 6, 2, 1, "2024-08-02", "delivered"),
    (20, 7, 10, 1, "2024-08-19", "pending"),
    (21, 9, 6, 1, "2024-08-30", "pending"),
    (22, 10, 7, 2, "2024-09-08", "pending"),
    (23, 12, 9, 1, "2024-09-12", "pending"),
    (24, 1, 5, 1, "2024-09-15", "pending"),
]

# Authorizer actions a plain SELECT needs; everything else (writes, DDL, PRAGMA, ATTACH,
# transactions) is refused so read-only does not depend on the file mode alone.
_READ_ACTIONS = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)


def create_sample_db(path: Path) -> None:
    """Build the sample database next to ``path`` and move it into place atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Two backends starting at once must never observe a half-populated file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    conn = sqlite3.connect(tmp)
    try:
        with conn:
            conn.executescript(SAMPLE_SCHEMA)
            conn.executemany("INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?)", SAMPLE_CUSTOMERS)
            conn.executemany("INSERT INTO products VALUES (?, ?, ?, ?, ?)", SAMPLE_PRODUCTS)
            conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?)", SAMPLE_ORDERS)
    finally:
        conn.close()
    os.replace(tmp, path)


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _jsonable(value: Any) -> Any:
    # BLOB columns come back as bytes, which cannot travel in a JSON tool result.
    return value.hex() if isinstance(value, bytes) else value


class ReadOnlyDatabase:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._uri = f"file:{pathname2url(str(path))}?mode=ro"

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        # One connection per call: sync tools run on worker threads and sqlite3 connections
        # are bound to the thread that opened them.
        conn = sqlite3.connect(self._uri, uri=True)
        try:
            yield conn
        finally:
            conn.close()

    def table_names(self) -> list[str]:
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
                "AND name NOT LIKE 'sqlite_%' ORDER BY name"
            ).fetchall()
        return [row[0] for row in rows]

    def schema_sql(self) -> str:
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL "
                "AND name NOT LIKE 'sqlite_%' ORDER BY type DESC, name"
            ).fetchall()
        return "\n\n".join(f"{row[0]};" for row in rows)

    def describe(self, table: str) -> dict[str, Any]:
        tables = self.table_names()
        if table not in tables:
            raise ToolError(
                f"unknown table '{table}'; valid tables: {', '.join(tables) or '(none)'}"
            )
        ident = _quote_ident(table)
        with self.connect() as conn:
            columns = conn.execute(f"PRAGMA table_info({ident})").fetchall()
            fks = conn.execute(f"PRAGMA foreign_key_list({ident})").fetchall()
            (row_count,) = conn.execute(f"SELECT COUNT(*) FROM {ident}").fetchone()
        return {
            "table": table,
            "columns": [
                {
                    "name": c[1],
                    "type": c[2],
                    "notnull": bool(c[3]),
                    "default": c[4],
                    "pk": bool(c[5]),
                }
                for c in columns
            ],
            "row_count": row_count,
            "foreign_keys": [
                {"column": fk[3], "references_table": fk[2], "references_column": fk[4]}
                for fk in fks
            ],
        }

    def query(self, sql: str, limit: int) -> dict[str, Any]:
        denied = False

        def authorize(action: int, *_: object) -> int:
            nonlocal denied
            if action in _READ_ACTIONS:
                return sqlite3.SQLITE_OK
            denied = True
            return sqlite3.SQLITE_DENY

        deadline = time.monotonic() + QUERY_DEADLINE_SECONDS
        with self.connect() as conn:
            conn.set_authorizer(authorize)
            conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
            try:
                cursor = conn.execute(sql)
                fetched = cursor.fetchmany(limit + 1)
            except sqlite3.Error as exc:
                raise _query_error(exc, denied) from exc
            columns = [d[0] for d in cursor.description or ()]
        rows = [[_jsonable(v) for v in row] for row in fetched[:limit]]
        return {
            "columns": columns,
            "rows": rows,
            "row_count": len(rows),
            "truncated": len(fetched) > limit,
        }


def _query_error(exc: sqlite3.Error, denied: bool) -> ToolError:
    message = str(exc)
    if denied or "readonly" in message:
        return ToolError(
            "the sqlite backend is read-only: only SELECT (or WITH ... SELECT) queries are allowed"
        )
    if message == "interrupted":
        return ToolError(f"query took longer than {QUERY_DEADLINE_SECONDS:g}s and was stopped")
    return ToolError(f"SQL error: {message}")


def build_server(db_path: Path) -> FastMCP:
    db = ReadOnlyDatabase(db_path)
    mcp = FastMCP(
        "sqlite",
        instructions=(
            "Read-only access to a SQLite database. Start with list_tables, then describe_table, "
            "then run SELECT statements with query."
        ),
    )
    read_only = {"readOnlyHint": True, "idempotentHint": True}

    @mcp.tool(annotations=read_only)
    def list_tables() -> list[str]:
        """List the names of all tables and views in the database."""
        return db.table_names()

    @mcp.tool(annotations=read_only)
    def describe_table(
        table: Annotated[str, Field(description="Exact table name, as returned by list_tables.")],
    ) -> dict[str, Any]:
        """Describe a table: its columns (name, type, notnull, default, pk), its row count and
        its foreign keys (column -> referenced table/column). Use this before writing a query."""
        return db.describe(table)

    @mcp.tool(annotations=read_only)
    def query(
        sql: Annotated[
            str,
            Field(description="One SQLite SELECT statement (WITH ... SELECT is fine). No writes."),
        ],
        limit: Annotated[
            int, Field(ge=1, le=10_000, description="Maximum number of rows to return.")
        ] = 100,
    ) -> dict[str, Any]:
        """Run a single read-only SQL query and return its result as
        {"columns": [...], "rows": [[...]], "row_count": n, "truncated": bool}.
        "truncated" is true when more rows exist than "limit"; add ORDER BY/LIMIT or aggregate
        instead of raising the limit. INSERT/UPDATE/DELETE/DDL are rejected."""
        return db.query(sql, limit)

    @mcp.resource("sqlite://schema", mime_type="text/plain")
    def schema() -> str:
        """The CREATE statements of every table, view and index in the database."""
        return db.schema_sql()

    @mcp.prompt
    def explore_table(table: str) -> str:
        """Guide an assistant through exploring one table of the database."""
        return (
            f"Explore the table '{table}' in the SQLite database.\n"
            f"1. Call describe_table with table='{table}' to learn its columns, row count and "
            "foreign keys.\n"
            f"2. Call query with 'SELECT * FROM \"{table}\" LIMIT 5' to look at sample rows.\n"
            "3. For the most interesting columns, use aggregate queries (COUNT, MIN, MAX, "
            "GROUP BY) to summarise their values.\n"
            "4. Follow foreign keys to related tables with JOINs where it helps.\n"
            "Finish with a short summary of what the table contains and how it relates to the "
            "rest of the schema."
        )

    return mcp


def resolve_db_path(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description="Read-only SQLite MCP backend (stdio).")
    parser.add_argument(
        "--db",
        type=Path,
        default=os.environ.get("SQLITE_DB_PATH") or DEFAULT_DB,
        help="SQLite database file (default: $SQLITE_DB_PATH or data/sample.db)",
    )
    return Path(parser.parse_args(argv).db).expanduser().resolve()


def main(argv: list[str] | None = None) -> None:
    db_path = resolve_db_path(argv)
    if not db_path.exists():
        create_sample_db(db_path)
    build_server(db_path).run(show_banner=False)


if __name__ == "__main__":
    main()
