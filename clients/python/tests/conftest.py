"""The service under test comes from the environment, set by the Rust test `tests/python_sdk.rs`
(which starts the real execbox with auth on): `EXECBOX_TEST_URL`, `EXECBOX_TEST_KEY` (a key of
its team) and `EXECBOX_TEST_DATA_DIR` (its data dir, for the audit log). Without them the tests
that need the service skip; the others (surface, SSE, retries against a fake server) still run.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any, Iterator

import pytest

import execbox


@pytest.fixture(scope="session")
def service() -> dict[str, str]:
    url, key = os.environ.get("EXECBOX_TEST_URL"), os.environ.get("EXECBOX_TEST_KEY")
    if not url or not key:
        pytest.skip("no EXECBOX_TEST_URL/EXECBOX_TEST_KEY: run through `cargo test --test python_sdk`")
    return {"url": url, "key": key, "data_dir": os.environ.get("EXECBOX_TEST_DATA_DIR", "")}


@pytest.fixture
def client(service: dict[str, str]) -> Iterator[execbox.Client]:
    with execbox.Client(service["url"], service["key"]) as c:
        yield c


@pytest.fixture
def aclient_args(service: dict[str, str]) -> tuple[str, str]:
    """An AsyncClient must be made inside the event loop that uses it; tests make their own."""
    return service["url"], service["key"]


@pytest.fixture
def audit(service: dict[str, str]) -> Any:
    """`audit(sql, *params)`: rows of the service's audit log (`<data-dir>/execbox.db`, read
    only, as the README says to read it)."""
    db = Path(service["data_dir"]) / "execbox.db"
    assert db.is_file(), f"no audit log at {db}"

    def query(sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return conn.execute(sql, params).fetchall()

    return query
