"""Shared fixtures: real databases (SQLite file and PostgreSQL) and real Redis.

Nothing here fakes a service: when PostgreSQL or Redis is down, the tests that
need them fail with a clear message (``.ci/run`` starts both first).
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
CAPTURES = DATA / "captures"
PG_ADMIN_URL = os.environ.get("HOTLINE_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("HOTLINE_TEST_REDIS", "redis://127.0.0.1:6379/15")


def _pg_admin_engine():
    from sqlalchemy import create_engine

    return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", future=True)


@pytest.fixture(scope="session")
def pg_database_url():
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    name = f"hotline_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = _pg_admin_engine()
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:  # a missing service is a failure, never a skip
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    yield url
    from sqlalchemy import create_engine

    create_engine(url).dispose()
    with admin.connect() as conn:
        conn.execute(text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n AND pid <> pg_backend_pid()"
        ), {"n": name})
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db_url(request, tmp_path):
    """An empty database of each kind (PostgreSQL: the session database, wiped)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hotline.db'}"
        return
    url = request.getfixturevalue("pg_database_url")
    from sqlalchemy import create_engine

    engine = create_engine(url)
    with engine.begin() as conn:  # tables, monthly partitions, trigger functions: all of it
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    engine.dispose()
    yield url


@pytest.fixture
def redis_url():
    """Real Redis, database 15, flushed before each test."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    except redis.exceptions.ConnectionError as exc:
        pytest.fail(f"Redis is not reachable at {REDIS_URL}: {exc}")
    yield REDIS_URL
    client.flushdb()
    client.close()
