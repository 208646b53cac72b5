"""Engines, sessions and migrations of the signals database.

The embedded default is the SQLite file ``data/07_model_output/signals.db`` (relative to
the working directory, the project root under ``kedro run``); any SQLAlchemy URL works,
e.g. ``postgresql+psycopg://user:pass@host/racecast``. Migrations run programmatically
(no ``alembic.ini``)::

    python -m racecast.signals upgrade --url sqlite:///data/07_model_output/signals.db
    python -m racecast.signals current --url sqlite:///data/07_model_output/signals.db
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import click
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_URL",
    "MIGRATIONS_PATH",
    "SUPPORTED_DIALECTS",
    "SchemaNotCurrentError",
    "SignalsDatabaseError",
    "alembic_config",
    "current_revision",
    "engine_from_url",
    "head_revision",
    "require_current_schema",
    "safe_url",
    "session_scope",
    "upgrade",
]

DEFAULT_URL = "sqlite:///data/07_model_output/signals.db"
MIGRATIONS_PATH = Path(__file__).resolve().parent / "migrations"
SUPPORTED_DIALECTS = ("sqlite", "postgresql")


class SignalsDatabaseError(RuntimeError):
    """The signals database URL is invalid or the database cannot be opened."""


class SchemaNotCurrentError(SignalsDatabaseError):
    """The database schema is not at the newest migration."""


def safe_url(url: str | URL) -> str:
    """The URL as text with its password masked (for messages and logs).

    Args:
        url: A SQLAlchemy URL or its string form.

    Returns:
        The URL with ``***`` for the password; the input unchanged if it cannot be parsed.
    """
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError, TypeError):
        return str(url)


def _parse_url(url: str | URL) -> URL:
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError, TypeError) as exc:
        raise SignalsDatabaseError(
            f"signals database URL {str(url)!r} is not a SQLAlchemy URL "
            f"(expected e.g. {DEFAULT_URL!r} or 'postgresql+psycopg://user@host/db'): {exc}"
        ) from exc
    if parsed.get_backend_name() not in SUPPORTED_DIALECTS:
        raise SignalsDatabaseError(
            f"signals database URL {safe_url(parsed)!r}: backend '{parsed.get_backend_name()}' "
            f"is not supported (supported: {', '.join(SUPPORTED_DIALECTS)})"
        )
    return parsed


def _enable_sqlite_foreign_keys(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def engine_from_url(url: str | URL, *, check: bool = True, **kwargs) -> Engine:
    """A SQLAlchemy engine for the signals database.

    For a SQLite file the parent folder is created, and foreign keys are enforced on every
    connection.

    Args:
        url: SQLAlchemy URL (``sqlite:///path.db``, ``postgresql+psycopg://...``).
        check: Open one connection now, so that a wrong URL fails here with a clear message.
        **kwargs: Passed to ``sqlalchemy.create_engine``.

    Returns:
        The engine.

    Raises:
        SignalsDatabaseError: If the URL is not a SQLAlchemy URL, its backend is not
            supported or its driver is not installed, or (``check``) the database cannot
            be opened. The message names the URL (password masked).
    """
    parsed = _parse_url(url)
    shown = safe_url(parsed)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        if not parsed.database.startswith("file:"):
            parent = Path(parsed.database).parent
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise SignalsDatabaseError(
                    f"signals database URL {shown!r}: cannot create the folder {str(parent)!r}: {exc}"
                ) from exc
    try:
        engine = create_engine(parsed, **kwargs)
    except (NoSuchModuleError, ImportError, ArgumentError, TypeError) as exc:
        raise SignalsDatabaseError(
            f"signals database URL {shown!r}: cannot create an engine "
            f"(is the driver for '{parsed.drivername}' installed?): {exc}"
        ) from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _enable_sqlite_foreign_keys)
    if check:
        try:
            with engine.connect():
                pass
        except SQLAlchemyError as exc:
            engine.dispose()
            raise SignalsDatabaseError(
                f"cannot open the signals database {shown!r}: {getattr(exc, 'orig', None) or exc}"
            ) from exc
    return engine


def _as_engine(url_or_engine: str | URL | Engine) -> tuple[Engine, bool]:
    """The engine and whether the caller created it here (and must dispose it)."""
    if isinstance(url_or_engine, Engine):
        return url_or_engine, False
    return engine_from_url(url_or_engine), True


@contextmanager
def session_scope(url_or_engine: str | URL | Engine) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on an exception.

    Args:
        url_or_engine: Database URL (an engine is created and disposed around the block)
            or an existing engine.

    Yields:
        The ORM session.
    """
    engine, owned = _as_engine(url_or_engine)
    try:
        with Session(engine, expire_on_commit=False) as session, session.begin():
            yield session
    finally:
        if owned:
            engine.dispose()


def alembic_config(url: str | URL) -> Config:
    """A programmatic alembic configuration: the package's migrations and ``url``.

    Args:
        url: Database URL.

    Returns:
        An ``alembic.config.Config`` without an ini file.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_PATH))
    # configparser interpolation: a literal '%' (URL-encoded passwords) must be doubled.
    rendered = _parse_url(url).render_as_string(hide_password=False)
    config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return config


@lru_cache(maxsize=1)
def head_revision() -> str:
    """The newest migration revision shipped with the package."""
    script = ScriptDirectory(str(MIGRATIONS_PATH))
    head = script.get_current_head()
    if head is None:
        raise SignalsDatabaseError(f"no migrations found in {MIGRATIONS_PATH}")
    return head


def current_revision(url_or_engine: str | URL | Engine) -> str | None:
    """The migration revision the database is at (``None`` for an empty database).

    Args:
        url_or_engine: Database URL or engine.

    Returns:
        The revision id, or ``None`` when no migration has run.
    """
    engine, owned = _as_engine(url_or_engine)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        if owned:
            engine.dispose()


def require_current_schema(engine: Engine) -> None:
    """Raise unless the database is migrated to the newest revision.

    Args:
        engine: Engine of the signals database.

    Raises:
        SchemaNotCurrentError: If the schema is missing or at another revision; the
            message gives the command that migrates it.
    """
    current, head = current_revision(engine), head_revision()
    if current != head:
        shown = safe_url(engine.url)
        raise SchemaNotCurrentError(
            f"signals database {shown!r} is at revision {current!r}, expected {head!r}; run "
            f"`python -m racecast.signals upgrade --url '{shown}'` (or racecast.signals.upgrade)"
        )


def upgrade(url: str | URL, revision: str = "head") -> str | None:
    """Run the alembic migrations up to ``revision`` (idempotent).

    Args:
        url: Database URL; a SQLite file and its folder are created when missing.
        revision: Target revision (``"head"``: the newest).

    Returns:
        The revision the database is at afterwards.

    Raises:
        SignalsDatabaseError: If the URL is invalid or the database cannot be opened.
    """
    config = alembic_config(url)
    engine = engine_from_url(url)
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
        now = current_revision(engine)
    finally:
        engine.dispose()
    logger.info("signals database %s at revision %s", safe_url(url), now)
    return now


@click.group()
def cli() -> None:
    """Signals database migrations (alembic, without alembic.ini)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


_URL_OPTION = click.option(
    "--url", default=DEFAULT_URL, show_default=True, help="SQLAlchemy URL of the signals database."
)


@cli.command("upgrade")
@_URL_OPTION
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def _upgrade_command(url: str, revision: str) -> None:
    """Migrate the database to REVISION."""
    try:
        click.echo(str(upgrade(url, revision)))
    except SignalsDatabaseError as exc:
        raise click.ClickException(str(exc)) from exc


@cli.command("current")
@_URL_OPTION
def _current_command(url: str) -> None:
    """Print the database's revision (None when never migrated)."""
    try:
        click.echo(str(current_revision(url)))
    except SignalsDatabaseError as exc:
        raise click.ClickException(str(exc)) from exc
