"""The ``racecast`` command line.

Like ``kedro``, every command runs from the project root and reads that project's
``conf/`` and feature store for the chosen ``--env``.

Made for scripts: a command's result is JSON on stdout and nothing else; every log line
(racecast's, Kedro's, Feast's, MLflow's) goes to stderr. An error is one line on stderr
(``Error: ...``) and exit code 2, never a traceback; a missing model or feature store
names the ``kedro run --env ...`` that builds it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import click

# Importing Kedro configures logging (without the project's conf/logging.yml, a rich
# handler on stdout) and logs that it did: that line goes to stderr as well.
with contextlib.redirect_stdout(sys.stderr):
    from racecast.project import load_parameters, project_root

logger = logging.getLogger("racecast")

#: Help of every command's ``--env`` option.
ENV_HELP = (
    "Kedro env: conf/ENV/ over conf/base/, as `kedro run --env ENV`; use the env the "
    "model and feature store were built with (default: local)."
)


def _fail(message: str) -> None:
    """Exit 2 with one line on stderr (newlines in ``message`` are folded)."""
    click.echo(f"Error: {' '.join(str(message).split())}", err=True)
    sys.exit(2)


def _build_first(what: str, env: str | None) -> str:
    """``what`` is missing: the message naming the ``kedro run`` that builds it."""
    run_env = env or "local"
    conf = project_root() / "conf"
    others = sorted(p.name for p in conf.iterdir() if p.is_dir() and p.name not in ("base", run_env))
    hint = f"; or pass the --env it was built with ({', '.join(others)})" if others else ""
    return f"{what}: build it with `kedro run --env {run_env}`{hint}"


class _StderrHandler(logging.StreamHandler):
    """Writes each record to the ``sys.stderr`` of the moment (click's test runner swaps it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _console_stream(handler: logging.Handler) -> str | None:
    """``"stdout"`` or ``"stderr"`` when the handler prints to that console, else None."""
    if isinstance(handler, logging.StreamHandler):
        stream = handler.stream
    else:  # rich.logging.RichHandler (Kedro's default) prints through a rich console
        stream = getattr(getattr(handler, "console", None), "file", None)
    if stream in (sys.stdout, sys.__stdout__):
        return "stdout"
    if stream in (sys.stderr, sys.__stderr__):
        return "stderr"
    return None


def _logs_to_stderr(level: int) -> Callable[[], None]:
    """Send every log record to stderr, one plain line each, from ``level`` up.

    Kedro configures logging when it is imported (the project's conf/logging.yml, else a
    rich handler on stdout) and libraries add handlers of their own. The root logger's
    console handlers give way to one stderr handler; any other logger's handler on
    stdout is pointed at stderr (a plain stream handler) or removed. The root, ``kedro``
    and ``racecast`` loggers (Kedro sets the last two to INFO) follow ``level``.

    Returns:
        A function that undoes it when the command is over (levels and the root's console
        handlers back; nothing on stdout comes back), so that a command run in-process
        (click's test runner) leaves the caller's logging as it was.
    """
    root = logging.getLogger()
    removed = [
        h for h in root.handlers if isinstance(h, _StderrHandler) or _console_stream(h) is not None
    ]
    for handler in removed:
        root.removeHandler(handler)
    others = [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    for each in others:
        for handler in list(each.handlers):
            if _console_stream(handler) != "stdout":
                continue
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(sys.stderr)
            else:
                each.removeHandler(handler)
    levels = {name: logging.getLogger(name).level for name in (None, "kedro", "racecast")}
    ours = _StderrHandler()
    ours.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    )
    ours.setLevel(level)
    root.addHandler(ours)
    for name in levels:
        logging.getLogger(name).setLevel(level)

    def restore() -> None:
        root.removeHandler(ours)
        for handler in removed:
            if not isinstance(handler, _StderrHandler) and _console_stream(handler) != "stdout":
                root.addHandler(handler)
        for name, previous in levels.items():
            logging.getLogger(name).setLevel(previous)

    return restore


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log at INFO level (on stderr).")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """racecast: calibrated win probabilities from racecards.

    Run it from the project root, like kedro. Results are JSON on stdout, logs go to
    stderr; errors are one line and exit code 2. --env ENV selects conf/ENV/ (over
    conf/base/) exactly as `kedro run --env ENV` does: pass the env your model and
    feature store were built with.
    """
    ctx.call_on_close(_logs_to_stderr(logging.INFO if verbose else logging.WARNING))


@cli.group()
def features() -> None:
    """Feature store commands."""


@features.command("online")
@click.argument("racecard", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--env", default=None, help=ENV_HELP)
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
    from racecast.features.store import get_store, materialized_until
    from racecast.inference.guard import check_point_in_time

    try:
        params = load_parameters(env)["features"]
        if not racecard.is_file():
            raise FileNotFoundError(f"{racecard}: no such file")
        rows = racecard_entity_rows(racecard.read_text(encoding="utf-8"), str(racecard))
        store = get_store(params["repo_path"])
        if materialized_until(store) is None:
            _fail(_build_first(f"the feature store {params['repo_path']} is empty", env))
        if as_of is not None:
            from racecast.inference.service import features_as_of

            frame = features_as_of(
                store,
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
                feature_store=store,
                guard=check_point_in_time,
                params=params.get("compute", {}),
            )
    except (RacecardError, FileNotFoundError, ValueError, KeyError) as exc:
        _fail(str(exc))
    click.echo(json.dumps(feature_rows_to_json(frame), indent=2))


def _serving_settings(env: str | None, bundle: str | None, **overrides):
    """Serving settings of an env, with CLI overrides (errors exit with a message)."""
    from racecast.inference.settings import ServingSettings

    return ServingSettings.from_project(env, bundle_uri=bundle, **overrides)


@cli.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="TCP port.")
@click.option("--env", default=None, help=ENV_HELP)
@click.option("--bundle", default=None, help="Bundle URI or pickle path (default: the env's serving.bundle_uri).")
@click.option("--insecure", is_flag=True, help="Serve without API keys (allow_anonymous); never in production.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="uvicorn workers.")
def serve(host: str, port: int, env: str | None, bundle: str | None, insecure: bool, workers: int) -> None:
    """Run the inference service (FastAPI + uvicorn): POST /api/v1/predict and friends.

    API keys come from conf/local/credentials.yml (racecast_api_keys) or RACECAST_API_KEYS;
    without any the service refuses to start unless --insecure. With --workers N, N
    processes share the port; they share the online store (use Redis, README "Scale").
    """
    import os
    import sys

    import uvicorn

    from racecast.inference.settings import SettingsError
    from racecast.serving.app import SERVE_ARGS_ENV, serve_app, serve_args

    os.environ[SERVE_ARGS_ENV] = serve_args(env, bundle, insecure)
    try:
        app = serve_app()  # settings, keys and paths checked here, before any worker starts
    except (SettingsError, FileNotFoundError, ValueError, KeyError) as exc:
        _fail(str(exc))
    if workers == 1:
        uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
        return
    # uvicorn's workers re-import the main module before answering its 5 s liveness ping:
    # hand over (same PID) to a launcher that imports only uvicorn (racecast.serving.run)
    launcher = [sys.executable, "-m", "racecast.serving.run", "--host", host, "--port", str(port)]
    os.execv(sys.executable, [*launcher, "--workers", str(workers)])


@cli.command("predict")
@click.argument("racecard", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--env", default=None, help=ENV_HELP)
@click.option("--bundle", default=None, help="Bundle URI or pickle path (default: the env's serving.bundle_uri).")
@click.option(
    "--as-of",
    "as_of",
    default=None,
    help="Score point in time from the offline store as known at this ISO 8601 time "
    "(races already run); without it, upcoming races from the online store.",
)
@click.option("--race", "races", multiple=True, help="Only this race of the file (repeatable).")
@click.option("--explain", is_flag=True, help="Add each runner's explanation (the API's explain=true).")
def predict(
    racecard: Path,
    env: str | None,
    bundle: str | None,
    as_of: str | None,
    races: tuple[str, ...],
    explain: bool,
) -> None:
    """Score RACECARD (JSON contract) and print the API's JSON answer, without a server.

    A race whose result the online store already holds is refused (exit 2) unless
    --as-of asks for a point-in-time answer from the offline store.
    """
    from mlflow.exceptions import MlflowException

    from racecast.features.store import get_store, materialized_until
    from racecast.inference.registry import load_bundle
    from racecast.inference.results import UnknownRaceError, select_races
    from racecast.inference.service import InferenceService, RacecardRequestError
    from racecast.inference.settings import SettingsError

    try:
        settings = _serving_settings(env, bundle)
        if not racecard.is_file():
            raise FileNotFoundError(f"{racecard}: no such file")
        text = racecard.read_text(encoding="utf-8")
        if races:
            text = select_races(text, races, str(racecard))
        try:
            model = load_bundle(settings.bundle_uri)
        except (MlflowException, FileNotFoundError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            _fail(_build_first(f"no model at {settings.bundle_uri} ({first})", env))
        store = get_store(settings.feature_repo)
        if materialized_until(store) is None:
            _fail(_build_first(f"the feature store {settings.feature_repo} is empty", env))
        service = InferenceService(settings, model, store)
        try:
            result = service.score_text(text, str(racecard), as_of=as_of, explain=explain)
        finally:
            service.close()
    except RacecardRequestError as exc:
        _fail("; ".join(f"{'.'.join(str(p) for p in d['loc'])}: {d['msg']}" for d in exc.details))
    except (SettingsError, FileNotFoundError, ValueError, KeyError, UnknownRaceError) as exc:
        _fail(str(exc).strip("'\""))
    click.echo(json.dumps(result, indent=2))


@cli.group()
def results() -> None:
    """Race-day results: bring a finished race's result into every store."""


@results.command("push")
@click.argument("results_file", metavar="RESULTS", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--env", default=None, help=ENV_HELP)
@click.option("--race", "races", multiple=True, help="Only this race of the file (repeatable).")
def results_push(results_file: Path, env: str | None, races: tuple[str, ...]) -> None:
    """Push RESULTS (a *.results.json, contract racecast.results/1) of races whose racecard
    is known (the env's upcoming racecards or its canonical tables).

    The results are validated as batch ingestion validates them (nothing is written when
    any record is rejected); the state of exactly the entities that ran is recomputed and
    written to the online store, the documents kept in the race-day folder for the next
    `kedro run`, and the canonical tables and offline sources updated. Pushing the same
    results again changes nothing. Prints a JSON summary.
    """
    from racecast.features.store import get_store
    from racecast.inference.results import (
        RaceDay,
        ResultsRejected,
        UnknownRaceError,
        raceday_paths,
        select_races,
    )

    try:
        params = load_parameters(env)["features"]
        if not results_file.is_file():
            raise FileNotFoundError(f"{results_file}: no such file")
        text = results_file.read_text(encoding="utf-8")
        if races:
            text = select_races(text, races, str(results_file))
        raceday = RaceDay(raceday_paths(env), get_store(params["repo_path"]), params.get("compute", {}))
        summary = raceday.push(text, str(results_file))
    except (ResultsRejected, UnknownRaceError, FileNotFoundError, ValueError, KeyError) as exc:
        _fail(str(exc).strip("'\""))
    click.echo(json.dumps(summary, indent=2))


@cli.command("races")
@click.argument("racecard", type=click.Path(dir_okay=False, path_type=Path))
def races_command(racecard: Path) -> None:
    """Print the race ids of RACECARD in off-time order, one per line (for shell loops)."""
    from racecast.inference.results import race_ids_by_off

    try:
        if not racecard.is_file():
            raise FileNotFoundError(f"{racecard}: no such file")
        ids = race_ids_by_off(racecard.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    if not ids:
        _fail(f"{racecard}: no races in the racecard")
    click.echo("\n".join(ids))


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
    """Console-script entry point: an unexpected error is one line and exit 2 as well
    (its traceback is logged at INFO, shown with -v)."""
    try:
        cli(prog_name="racecast")
    except Exception as exc:  # the commands catch what they expect; this is the rest
        logger.info("unexpected error", exc_info=True)
        _fail(f"{type(exc).__name__}: {exc} (run with -v for the traceback)")


if __name__ == "__main__":
    main()
