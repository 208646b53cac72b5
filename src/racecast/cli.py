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


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="racecast")


if __name__ == "__main__":
    main()
