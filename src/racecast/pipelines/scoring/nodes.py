"""Nodes of the scoring pipeline: a day's racecards -> signals and bets; settlement.

The racecards are parsed by the ingestion parser
(:func:`racecast.features.online.racecard_entity_rows`), their features read from the
Feast online store and scored with the inference bundle by the service's own code
(:class:`racecast.inference.service.InferenceService`: ``features`` and ``score_features``) under
the ``serving`` parameters, so a published signal is what ``POST /api/v1/predict`` would
answer for the same racecard. Publishing (:func:`racecast.signals.publish_signals`,
:func:`racecast.signals.place_bets`) is keyed by ``as_of``, the scoring snapshot taken
from the racecards (not the wall clock): re-running the same scoring changes nothing.
:func:`settle_bets` fills P&L and closing-line value from the primary tables.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from racecast.data.datasets import loaded
from racecast.features import store as feature_store
from racecast.features.online import racecard_entity_rows
from racecast.inference.bundle import InferenceBundle
from racecast.inference.service import InferenceService
from racecast.inference.settings import ServingSettings
from racecast.signals import (
    DEFAULT_URL,
    load_bets,
    place_bets,
    publish_signals,
    results_from_tables,
    settle,
    upgrade,
)
from racecast.signals.db import safe_url
from racecast.signals.models import to_utc

logger = logging.getLogger(__name__)

#: Partition ids of ``raw_upcoming_racecards`` start with the race day.
_DAY_PREFIX = re.compile(r"^(\d{4}-\d{2}-\d{2})")

#: Columns of :func:`signals_frame` (the frame handed to ``publish_signals``).
SIGNAL_COLUMNS = [
    "race_id",
    "horse_id",
    "p_win",
    "best_odds",
    "fair_odds",
    "edge",
    "kelly_fraction",
    "stake_units",
    "reasons",
]


def _utc(value: Any) -> pd.Timestamp:
    """A timestamp in UTC (naive = UTC)."""
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


# ---------------------------------------------------------------------------- inputs
def select_bundle(
    inference_bundle: InferenceBundle | Callable[[], InferenceBundle], params: dict[str, Any]
) -> InferenceBundle:
    """The bundle to score with: this run's, or the one ``scoring.bundle_uri`` names.

    Args:
        inference_bundle: The registry pipeline's ``inference_bundle``, or the function
            that loads it (``LazyPickleDataset``): it is read only when used.
        params: ``scoring`` parameters; ``bundle_uri`` null keeps ``inference_bundle``,
            otherwise ``models:/<name>@<alias>``, ``models:/<name>/<version>`` or a
            pickle path is loaded with :func:`racecast.inference.registry.load_bundle`
            (and this run's bundle is never read).

    Returns:
        The bundle.
    """
    uri = params.get("bundle_uri")
    if uri is None or str(uri).strip() == "":
        bundle = loaded(inference_bundle)
        logger.info("scoring with this run's inference bundle %r", bundle)
        return bundle
    from racecast.inference.registry import load_bundle  # imports MLflow

    bundle = load_bundle(str(uri))
    logger.info("scoring with %r from scoring.bundle_uri=%s", bundle, uri)
    return bundle


def _race_day(params: Mapping[str, Any]) -> str | None:
    """``scoring.race_date`` as ``YYYY-MM-DD`` (None when null)."""
    value = params.get("race_date")
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(str(value)).isoformat()
    except ValueError as exc:
        raise ValueError(
            f"parameter scoring.race_date: expected a date YYYY-MM-DD or null, got {value!r}"
        ) from exc


def _day_partitions(partitions: Mapping[str, Any], day: str | None) -> tuple[str, list[str]]:
    """The race day and the sorted partition ids holding its racecards."""
    if not partitions:
        raise ValueError(
            "raw_upcoming_racecards is empty: put the day's racecards in its folder as "
            "YYYY-MM-DD.racecard.json (the synthetic world writes them into data/01_raw/upcoming/)"
        )
    dated = {pid: m.group(1) for pid in partitions if (m := _DAY_PREFIX.match(pid))}
    if day is None:
        undated = sorted(set(partitions) - set(dated))
        if undated:
            raise ValueError(
                f"raw_upcoming_racecards: cannot tell the race day of {undated[:3]}; name the "
                "files YYYY-MM-DD<anything>.racecard.json or set parameter scoring.race_date"
            )
        day = max(dated.values())
    chosen = sorted(pid for pid, d in dated.items() if d == day)
    if not chosen:
        raise ValueError(
            f"parameter scoring.race_date: no racecard of {day} in raw_upcoming_racecards "
            f"(have {sorted(partitions)[:10]})"
        )
    return day, chosen


def parse_upcoming_racecards(
    raw_upcoming_racecards: Mapping[str, Callable[[], str] | str], params: dict[str, Any]
) -> pd.DataFrame:
    """Entity rows of one day's racecards, parsed and validated as ingestion does.

    Args:
        raw_upcoming_racecards: Partition id -> loader (``PartitionedDataset``) or text;
            ids start with the race day (``YYYY-MM-DD``, the file name without
            ``.racecard.json``).
        params: ``scoring`` parameters: ``race_date`` (null: the latest day present).

    Returns:
        :func:`racecast.features.online.racecard_entity_rows` of every racecard of the
        day, in file order: one row per active runner.

    Raises:
        ValueError: If no racecard matches the day, a race is in two files, or the day
            of a file cannot be told.
        racecast.features.online.RacecardError: If a racecard is invalid (any rejected
            record fails the run: a day is never scored in part silently).
    """
    day, chosen = _day_partitions(raw_upcoming_racecards, _race_day(params))
    frames, origin = [], {}
    for pid in chosen:
        loader = raw_upcoming_racecards[pid]
        text = loader() if callable(loader) else loader
        rows = racecard_entity_rows(text, f"{pid}.racecard.json")
        for race_id in rows["race_id"].unique():
            if race_id in origin:
                raise ValueError(
                    f"race {race_id} is in two upcoming racecards: {origin[race_id]} and {pid}"
                )
            origin[race_id] = pid
        frames.append(rows)
    entity_rows = pd.concat(frames, ignore_index=True)
    logger.info(
        "upcoming racecards of %s (%s): %d races, %d runners",
        day,
        ", ".join(chosen),
        entity_rows["race_id"].nunique(),
        len(entity_rows),
    )
    return entity_rows


def scoring_cutoff(entity_rows: pd.DataFrame, params: dict[str, Any]) -> str:
    """The scoring snapshot ``as_of``: ``scoring.as_of``, or the day's first off time.

    Taken from the racecards, never from the wall clock, so scoring the same racecards
    again gives the same ``as_of`` and publishing is an idempotent upsert.

    Args:
        entity_rows: Output of :func:`parse_upcoming_racecards`.
        params: ``scoring`` parameters: ``as_of`` (ISO 8601 with a UTC offset; null: the
            earliest ``off_time`` of the racecards).

    Returns:
        ``as_of`` as ISO 8601 UTC text.

    Raises:
        ValueError: If ``scoring.as_of`` is not an aware timestamp or is after the first
            off (a snapshot cannot be taken after a race it scores has started).
    """
    first_off = _utc(entity_rows["off_time"].min())
    value = params.get("as_of")
    if value is None:
        as_of = to_utc(first_off, "first off_time")
    else:
        as_of = to_utc(value, "parameter scoring.as_of")
        if as_of > first_off:
            first = entity_rows.loc[entity_rows["off_time"].idxmin(), "race_id"]
            raise ValueError(
                f"parameter scoring.as_of {as_of.isoformat()} is after the off of race {first} "
                f"({first_off.isoformat()}); the snapshot must precede "
                "every race it scores"
            )
    logger.info("scoring snapshot as_of %s", as_of.isoformat())
    return as_of.isoformat()


# ---------------------------------------------------------------------------- scoring
def _serving_settings(
    serving_params: Mapping[str, Any] | None, features_params: Mapping[str, Any] | None = None
) -> ServingSettings:
    """The ``serving`` parameters validated as the service validates them, with the
    feature repo and ``features.compute`` of the ``features`` parameters."""
    values = dict(serving_params or {})
    if features_params is not None:
        values["feature_repo"] = features_params.get("repo_path", "feature_repo")
        values["feature_params"] = dict(features_params.get("compute") or {})
    return ServingSettings.build(values)


def online_feature_rows(
    entity_rows: pd.DataFrame,
    bundle: InferenceBundle,
    as_of: str,
    feast_materialization: dict[str, Any],
    features_params: dict[str, Any],
    serving_params: dict[str, Any],
) -> pd.DataFrame:
    """The bundle's input: online features of the runners plus their final odds.

    Args:
        entity_rows: Output of :func:`parse_upcoming_racecards`.
        bundle: The bundle (its feature service, unless ``serving.feature_service``).
        as_of: The scoring snapshot.
        feast_materialization: The features pipeline's materialization summary; an
            input so that scoring runs after the online store is loaded.
        features_params: ``features`` parameters (``repo_path``, ``compute``).
        serving_params: ``serving`` parameters (``feature_service``).

    Returns:
        :func:`racecast.features.online.online_features` rows with ``odds_final``.

    Raises:
        ValueError: If the online store was never materialized.
        racecast.inference.guard.LookAheadError: If the online store holds state from
            at or after a race's off (its result is known): the point-in-time guard
            every scoring path shares, in ``InferenceService.features``.
    """
    settings = _serving_settings(serving_params, features_params)
    repo_path = str(settings.feature_repo)
    fs = feature_store.get_store(repo_path)
    until = feature_store.materialized_until(fs)
    if until is None:
        raise ValueError(
            f"the online store of {repo_path} was never materialized: run the features "
            "pipeline first (kedro run --pipelines features)"
        )
    logger.info(
        "online store materialized until %s (features pipeline: %s)",
        _utc(until).isoformat(),
        feast_materialization.get("end"),
    )
    service = InferenceService(settings, bundle, fs)
    features = service.features(entity_rows)
    logger.info(
        "online features (%s): %d runners, %d columns", service.feature_service, *features.shape
    )
    return features


def score_runners(
    features: pd.DataFrame,
    entity_rows: pd.DataFrame,
    bundle: InferenceBundle,
    as_of: str,
    serving_params: dict[str, Any],
) -> dict[str, Any]:
    """Probabilities, fair odds, edges and stakes of every runner, as the service answers.

    Args:
        features: Output of :func:`online_feature_rows`.
        entity_rows: Output of :func:`parse_upcoming_racecards`.
        bundle: The bundle.
        as_of: The scoring snapshot.
        serving_params: ``serving`` parameters: staking (``kelly_fraction``,
            ``bankroll_units``, ``max_stake_fraction``, ``staking_track``),
            ``staleness_threshold_days``, ``explain_top_k``.

    Returns:
        ``{"as_of", "model_version", "feature_service", "races"}``; ``races`` is
        :func:`racecast.inference.scoring.score_races` output (the API's ``races``).

    Raises:
        ValueError: If the bundle was trained on races run after ``as_of``.
    """
    cutoff = to_utc(as_of, "as_of")
    trained_until = getattr(bundle, "trained_until", None)
    if trained_until is not None and _utc(trained_until) > cutoff:
        raise ValueError(
            f"bundle {bundle.model_version} was trained on races until "
            f"{_utc(trained_until).isoformat()}, after "
            f"the scoring snapshot as_of {cutoff.isoformat()}; score this day with an older "
            "bundle (parameter scoring.bundle_uri)"
        )
    service = InferenceService(_serving_settings(serving_params), bundle, None)
    try:  # the signals keep each runner's explanation
        scored = service.score_features(entity_rows, features, explain=True)
    finally:
        service.close()
    races = scored["races"]
    staked = [r for race in races for r in race["runners"] if r["stake_units"] > 0]
    for reason in sorted({race["stake_reason"] for race in races if not race["stakeable"]}):
        logger.warning("signals are published with stake 0: %s", reason)
    logger.info(
        "scored %d races, %d runners with %s; %d stakes",
        len(races),
        sum(race["n_runners"] for race in races),
        bundle.model_version,
        len(staked),
    )
    return {
        "as_of": cutoff.isoformat(),
        "model_version": scored["model_version"],
        "feature_service": scored["feature_service"],
        "races": races,
    }


# ---------------------------------------------------------------------------- signals
def signals_frame(predictions: Mapping[str, Any]) -> pd.DataFrame:
    """The signals of scored runners, as :func:`racecast.signals.publish_signals` takes them.

    ``p_win`` is the fundamental probability and ``fair_odds = 1 / p_win``; ``best_odds``
    the racecard's final price; ``edge``, ``kelly_fraction`` and ``stake_units`` are the
    service's (on the ``staking_track`` probability) and stored as given. ``reasons``
    keeps the rest of the runner's answer: ``rank``, ``p_market``, ``p_win_combined``,
    ``staking_track``, ``stake_reason`` (why the stake is 0: the track is not stakeable,
    no price, edge <= 0; None when staked), ``feature_staleness_days``, ``stale`` and
    ``explanation``.

    Args:
        predictions: Output of :func:`score_runners`.

    Returns:
        One row per runner with :data:`SIGNAL_COLUMNS`.
    """
    rows = []
    for race in predictions["races"]:
        for runner in race["runners"]:
            rows.append(
                {
                    "race_id": race["race_id"],
                    "horse_id": runner["horse_id"],
                    "p_win": runner["p_win"],
                    "best_odds": runner["market_odds"],
                    "fair_odds": runner["fair_odds"],
                    "edge": runner["edge"],
                    "kelly_fraction": runner["kelly_fraction"],
                    "stake_units": runner["stake_units"],
                    "reasons": {
                        "rank": runner["rank"],
                        "p_market": runner["p_market"],
                        "p_win_combined": runner["p_win_combined"],
                        "staking_track": race["staking_track"],
                        "stake_reason": runner["stake_reason"],
                        "feature_staleness_days": runner["feature_staleness_days"],
                        "stale": runner["stale"],
                        "explanation": runner["explanation"],
                    },
                }
            )
    frame = pd.DataFrame(rows, columns=SIGNAL_COLUMNS)
    for column in ("p_win", "best_odds", "fair_odds", "edge", "kelly_fraction", "stake_units"):
        frame[column] = pd.to_numeric(frame[column]).astype(float)
    return frame


def model_identity(predictions: Mapping[str, Any], model_name: str) -> dict[str, str]:
    """The ``models`` row of the bundle: ``{"name", "version", "feature_service"}``.

    Args:
        predictions: Output of :func:`score_runners`.
        model_name: Registered model name (``registry.model_name``).

    Returns:
        ``version`` is the registry version (``racecast-win/3`` -> ``3``) of a bundle
        loaded from the registry, else the bundle's fingerprint.
    """
    name = str(model_name)
    version = str(predictions["model_version"]).removeprefix(f"{name}/")
    return {"name": name, "version": version, "feature_service": predictions["feature_service"]}


def _signals_db(params: Mapping[str, Any]) -> str:
    """``scoring.signals_db_url``, migrated first when ``scoring.migrate``; its URL."""
    url = str(params.get("signals_db_url") or DEFAULT_URL)
    if params.get("migrate", True):
        upgrade(url)
    return url


def publish_scored_signals(
    predictions: dict[str, Any], model_name: str, params: dict[str, Any]
) -> dict[str, Any]:
    """Upsert the day's signals at ``as_of`` and back the qualifying ones (idempotent).

    Args:
        predictions: Output of :func:`score_runners`.
        model_name: Registered model name (``registry.model_name``).
        params: ``scoring`` parameters: ``signals_db_url``, ``migrate`` and ``bets``
            (``min_edge``, ``max_odds``).

    Returns:
        ``{"as_of", "signals_db", "model", "races", "runners", "signals": {"rows",
        "inserted", "updated", "unchanged", ...}, "bets": {"eligible", "placed",
        "existing", ...}}``; re-publishing the same scoring reports every row unchanged
        and every bet existing.

    Raises:
        racecast.signals.SignalsDatabaseError: Bad URL, unreachable database, or a
            schema that is not migrated (with ``migrate: false``).
    """
    url = _signals_db(params)
    as_of = predictions["as_of"]
    model = model_identity(predictions, model_name)
    frame = signals_frame(predictions)
    signals = publish_signals(url, model, frame, as_of)
    bets_params = params.get("bets") or {}
    max_odds = bets_params.get("max_odds")
    bets = place_bets(
        url,
        as_of,
        min_edge=float(bets_params.get("min_edge", 0.0)),
        model=model,
        max_odds=None if max_odds is None else float(max_odds),
    )
    return {
        "as_of": as_of,
        "signals_db": safe_url(url),
        "model": model,
        "races": len(predictions["races"]),
        "runners": len(frame),
        "signals": signals,
        "bets": bets,
    }


def _finite(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _bet_totals(bets: pd.DataFrame) -> dict[str, Any]:
    """Counts, stake, P&L, ROI and mean CLV of every bet in the database."""
    if bets.empty:
        return {
            "bets": 0,
            "open": 0,
            "settled": 0,
            "staked": 0.0,
            "pnl": 0.0,
            "roi": None,
            "mean_clv": None,
        }
    settled = bets[bets["result"].notna()]
    decided = settled[settled["result"] != "void"]
    staked = float(decided["stake"].sum())
    pnl = float(settled["pnl"].sum())
    return {
        "bets": len(bets),
        "open": int(bets["result"].isna().sum()),
        "settled": len(settled),
        "staked": staked,
        "pnl": pnl,
        "roi": pnl / staked if staked > 0 else None,
        "mean_clv": _finite(pd.to_numeric(settled["clv"]).astype(float).mean()),
    }


def settle_bets(
    races: pd.DataFrame,
    runners: pd.DataFrame,
    scoring_report: dict[str, Any],
    params: dict[str, Any],
) -> dict[str, Any]:
    """Settle every bet whose race has a result in the primary tables (idempotent).

    Args:
        races: Primary ``races`` table (``status``).
        runners: Primary ``runners`` table (``post_*`` results, ``non_runner``).
        scoring_report: Output of :func:`publish_scored_signals`; an input so that bets
            placed by this run are settled by it when their results are already in.
        params: ``scoring`` parameters (``signals_db_url``, ``migrate``).

    Returns:
        ``{"signals_db", "results", "matched", "settled", "corrected", "unchanged",
        "unresolved", "totals"}``: :func:`racecast.signals.settle` counts, the number of
        result rows offered, and ``totals`` of every bet in the database (``bets``,
        ``open``, ``settled``, ``staked`` on won/lost bets, ``pnl``, ``roi``,
        ``mean_clv``).
    """
    url = _signals_db(params)
    results = results_from_tables(races, runners)
    counts = settle(url, results)
    report = {
        "signals_db": safe_url(url),
        "results": len(results),
        **counts,
        "totals": _bet_totals(load_bets(url)),
    }
    logger.info("settlement: %s (latest scoring as_of %s)", report, scoring_report.get("as_of"))
    return report
