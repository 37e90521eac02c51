"""`pvsignal store migrate`: the schema applied by a command that then exits (the Helm chart's
migration Job), and store URLs shown without their passwords."""

from __future__ import annotations

import psycopg
import pytest

from pvsignal.cli import main
from pvsignal.store import open_store, redact_url
from tests.support.postgres import create_database


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    return {name for (name,) in rows}


def test_migrate_creates_the_schema_of_an_empty_postgres_database(postgres_server, capsys):
    url = create_database(postgres_server, "store_cli_migrate")
    assert _tables(url) == set()

    assert main(["store", "migrate", "--store", url]) == 0
    assert main(["store", "migrate", "--store", url]) == 0  # a second run changes nothing

    tables = _tables(url)
    assert {"schema_version", "cases", "consumer_offsets"} <= tables
    store = open_store(url)  # what the API and consumers then open: already current
    try:
        assert store.ping()
    finally:
        store.close()
    assert "is at the current schema" in capsys.readouterr().out


def test_migrate_creates_a_sqlite_store(tmp_path):
    path = tmp_path / "trial.db"
    assert main(["store", "migrate", "--store", f"sqlite:///{path}"]) == 0
    assert path.exists()


def test_migrate_reads_the_url_from_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "env.db"
    monkeypatch.setenv("PVSIGNAL_STORE_URL", f"sqlite:///{path}")
    assert main(["store", "migrate"]) == 0
    assert path.exists()


def test_messages_never_show_a_store_password(capsys):
    assert redact_url("postgresql://pv:s3cret@db:5432/pv?sslmode=verify-full") == (
        "postgresql://pv:***@db:5432/pv?sslmode=verify-full"
    )
    assert redact_url("sqlite:///pvsignal.db") == "sqlite:///pvsignal.db"
    assert main(["store", "migrate", "--store", "mysql://pv:s3cret@db/pv"]) == 2
    assert "s3cret" not in capsys.readouterr().err


def test_postgres_tls_is_set_in_the_url(postgres_server):
    """sslmode (and sslrootcert, sslcert, sslkey) are libpq parameters of the URL: the test
    server speaks no TLS, so requiring it is refused and disabling it connects."""
    url = create_database(postgres_server, "store_cli_tls")
    open_store(f"{url}?sslmode=disable").close()
    with pytest.raises(psycopg.OperationalError, match="SSL|ssl"):
        open_store(f"{url}?sslmode=require")
