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
def features_online(racecard: Path, env: str | None, service_name: str | None) -> None:
    """Print the online feature rows of every runner of RACECARD (JSON contract) as JSON."""
    from racecast.features.online import (
        RacecardError,
        feature_rows_to_json,
        online_features,
        racecard_entity_rows,
    )

    try:
        params = load_parameters(env)["features"]
        if not racecard.is_file():
            raise FileNotFoundError(f"{racecard}: no such file")
        rows = racecard_entity_rows(racecard.read_text(encoding="utf-8"), str(racecard))
        frame = online_features(
            rows,
            service_name or params["training_service"],
            repo_path=params["repo_path"],
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

    from racecast.serving.app import create_app
    from racecast.serving.settings import SettingsError

    try:
        settings = _serving_settings(env, bundle, allow_anonymous=True if insecure else None)
        app = create_app(settings)
    except (SettingsError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    if workers > 1:
        _fail("--workers > 1 needs an import string; run several `racecast serve` processes behind a proxy")
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)


@cli.command("predict")
@click.argument("racecard", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--env", default=None, help="Kedro env whose conf and feature store to use (default: local).")
@click.option("--bundle", default=None, help="Bundle URI or pickle path (default: models:/racecast-win@champion).")
def predict(racecard: Path, env: str | None, bundle: str | None) -> None:
    """Score RACECARD (JSON contract) and print the API's JSON answer, without a server."""
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
        result = service.score_text(text, str(racecard))
    except RacecardRequestError as exc:
        _fail("; ".join(f"{'.'.join(str(p) for p in d['loc'])}: {d['msg']}" for d in exc.details))
    except (SettingsError, FileNotFoundError, ValueError, KeyError) as exc:
        _fail(str(exc))
    click.echo(json.dumps(result, indent=2))


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
