"""The ``racecast`` command line.

Like ``kedro``, every command runs from the project root and reads that project's
``conf/`` and feature store for the chosen ``--env``.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from racecast.project import load_parameters

logger = logging.getLogger("racecast")


def _fail(message: str) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(2)


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log at INFO level.")
def cli(verbose: bool) -> None:
    """racecast: calibrated win probabilities from racecards."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@cli.group()
def features() -> None:
    """Feature store commands."""


@features.command("online")
@click.argument("racecard", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--env", default=None, help="Kedro env whose conf and feature store to use (default: local).")
@click.option("--service", "service_name", default=None, help="FeatureService (default: the training service).")
@click.option(
    "--as-of",
    "as_of",
    default=None,
    help="Read point in time from the offline store as known at this ISO 8601 time "
    "(races already run); without it, upcoming races from the online store.",
)
def features_online(racecard: Path, env: str | None, service_name: str | None, as_of: str | None) -> None:
    """Print the online feature rows of every runner of RACECARD (JSON contract) as JSON.

    Races whose results the online store already holds are refused (exit 2): pass
    --as-of to read them point in time instead.
    """
    from racecast.features.online import (
        RacecardError,
        feature_rows_to_json,
        online_features,
        racecard_entity_rows,
    )
    from racecast.inference.guard import check_point_in_time

    try:
        params = load_parameters(env)["features"]
        if not racecard.is_file():
            raise FileNotFoundError(f"{racecard}: no such file")
        rows = racecard_entity_rows(racecard.read_text(encoding="utf-8"), str(racecard))
        if as_of is not None:
            from racecast.features.store import get_store
            from racecast.inference.service import features_as_of

            frame = features_as_of(
                get_store(params["repo_path"]),
                service_name or params["training_service"],
                rows,
                as_of,
                params.get("compute", {}),
            )
        else:
            frame = online_features(
                rows,
                service_name or params["training_service"],
                repo_path=params["repo_path"],
                guard=check_point_in_time,
                params=params.get("compute", {}),
            )
    except (RacecardError, FileNotFoundError, ValueError, KeyError) as exc:
        _fail(str(exc))
    click.echo(json.dumps(feature_rows_to_json(frame), indent=2))


def _serving_settings(env: str | None, bundle: str | None, **overrides):
    """Serving settings of an env, with CLI overrides (errors exit with a message)."""
    from racecast.serving.settings import ServingSettings

    return ServingSettings.from_project(env, bundle_uri=bundle, **overrides)


@cli.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="TCP port.")
@click.option("--env", default=None, help="Kedro env whose conf and feature store to use (default: local).")
@click.option("--bundle", default=None, help="Bundle URI or pickle path (default: models:/racecast-win@champion).")
@click.option("--insecure", is_flag=True, help="Serve without API keys (allow_anonymous); never in production.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="uvicorn workers.")
def serve(host: str, port: int, env: str | None, bundle: str | None, insecure: bool, workers: int) -> None:
    """Run the inference service (FastAPI + uvicorn): POST /api/v1/predict and friends.

    API keys come from conf/local/credentials.yml (racecast_api_keys) or RACECAST_API_KEYS;
    without any the service refuses to start unless --insecure.
    """
    import uvicorn

    from racecast.inference.results import raceday_paths
    from racecast.serving.app import create_app
    from racecast.serving.settings import SettingsError

    try:
        settings = _serving_settings(env, bundle, allow_anonymous=True if insecure else None)
        app = create_app(settings, raceday_paths=raceday_paths(env))
    except (SettingsError, FileNotFoundError, ValueError, KeyError) as exc:
        _fail(str(exc))
    if workers > 1:
        _fail("--workers > 1 needs an import string; run several `racecast serve` processes behind a proxy")
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)


@cli.command("predict")
@click.argument("racecard", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--env", default=None, help="Kedro env whose conf and feature store to use (default: local).")
@click.option("--bundle", default=None, help="Bundle URI or pickle path (default: models:/racecast-win@champion).")
@click.option(
    "--as-of",
    "as_of",
    default=None,
    help="Score point in time from the offline store as known at this ISO 8601 time "
    "(races already run); without it, upcoming races from the online store.",
)
def predict(racecard: Path, env: str | None, bundle: str | None, as_of: str | None) -> None:
    """Score RACECARD (JSON contract) and print the API's JSON answer, without a server.

    A race whose result the online store already holds is refused (exit 2) unless
    --as-of asks for a point-in-time answer from the offline store.
    """
    from racecast.features.store import get_store
    from racecast.inference.service import InferenceService, RacecardRequestError
    from racecast.serving.registry import load_bundle
    from racecast.serving.settings import SettingsError

    try:
        settings = _serving_settings(env, bundle)
        if not racecard.is_file():
            raise FileNotFoundError(f"{racecard}: no such file")
        text = racecard.read_text(encoding="utf-8")
        service = InferenceService(settings, load_bundle(settings.bundle_uri), get_store(settings.feature_repo))
        result = service.score_text(text, str(racecard), as_of=as_of)
    except RacecardRequestError as exc:
        _fail("; ".join(f"{'.'.join(str(p) for p in d['loc'])}: {d['msg']}" for d in exc.details))
    except (SettingsError, FileNotFoundError, ValueError, KeyError) as exc:
        _fail(str(exc))
    click.echo(json.dumps(result, indent=2))


@cli.group()
def results() -> None:
    """Race-day results: bring a finished race's result into every store."""


@results.command("push")
@click.argument("results_file", metavar="RESULTS", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--env", default=None, help="Kedro env whose conf, tables and feature store to use (default: local).")
def results_push(results_file: Path, env: str | None) -> None:
    """Push RESULTS (a *.results.json, contract racecast.results/1) of races whose racecard
    is known (the env's upcoming racecards or its canonical tables).

    The results are validated as batch ingestion validates them (nothing is written when
    any record is rejected); the state of exactly the entities that ran is recomputed and
    written to the online store, the documents kept in the race-day folder for the next
    `kedro run`, and the canonical tables and offline sources updated. Pushing the same
    results again changes nothing. Prints a JSON summary.
    """
    from racecast.features.store import get_store
    from racecast.inference.results import RaceDay, ResultsRejected, UnknownRaceError, raceday_paths

    try:
        params = load_parameters(env)["features"]
        if not results_file.is_file():
            raise FileNotFoundError(f"{results_file}: no such file")
        raceday = RaceDay(raceday_paths(env), get_store(params["repo_path"]), params.get("compute", {}))
        summary = raceday.push(results_file.read_text(encoding="utf-8"), str(results_file))
    except (ResultsRejected, UnknownRaceError, FileNotFoundError, ValueError, KeyError) as exc:
        _fail(str(exc).strip("'\""))
    click.echo(json.dumps(summary, indent=2))


@cli.command("api-key-hash")
@click.argument("key")
def api_key_hash(key: str) -> None:
    """Print the sha256:<hex> form of KEY to store in racecast_api_keys instead of the key."""
    from racecast.serving.auth import hash_api_key

    try:
        click.echo(hash_api_key(key))
    except ValueError as exc:
        _fail(str(exc))


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="racecast")


if __name__ == "__main__":
    main()
