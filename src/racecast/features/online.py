"""Online features for a racecard: Feast online store + the shared transform.

The same two steps as the training set: read the FeatureService's state (here online,
there point-in-time), then ``racecast.features.transform.build_features``. Debutants have
no state: they get explicit missing values and ``is_debut = 1``, never an error.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from racecast.features import entities, specs, store, transform
from racecast.features.kept_races import KeptRaces
from racecast.features.online_read import OnlineReader

logger = logging.getLogger(__name__)


class RacecardError(ValueError):
    """A racecard that cannot be scored; the message names the file and field.

    ``problems`` lists every problem found (dicts with ``race_id``, ``horse_id``,
    ``field``, ``reason``, ``detail``; records quarantined only because of another
    record's problem are left out); empty when the text is not a racecard at all.
    """

    def __init__(self, message: str, problems: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


_PROBLEM_KEYS = ("race_id", "horse_id", "field", "reason", "detail")
#: Canonical columns ``entities.entity_frame`` reads from a clean racecard's races and
#: runners. No result columns: the clean path takes only pending races without any
#: (``request.clean_racecard_columns``), whose labels are null whatever they would hold.
_ENTITY_INPUT_COLUMNS = (
    list(entities.RACE_FIELDS),
    [*entities.RUNNER_FIELDS, specs.CARD_ORDER, specs.ODDS_CAPPED],
)


def racecard_entity_rows(
    text: str,
    source_file: str = "<request>",
    plausibility: Any = None,
    as_of: Any = None,
) -> pd.DataFrame:
    """Parse a racecard (JSON contract) into entity rows, as ingestion would.

    Args:
        text: The racecard JSON text.
        source_file: Name used in error messages.
        plausibility: Plausible ranges
            (:class:`racecast.ingestion.plausibility.Plausibility`; defaults when None).
        as_of: Reference time of the plausible off-time window (None: now).

    Returns:
        One entity row per active runner (labels empty: the races are not run yet).

    Raises:
        RacecardError: If the file is not a valid racecard or any record was rejected.
    """
    from racecast.ingestion.racecards import parse_racecards
    from racecast.ingestion.request import clean_racecard_columns, racecard_problems
    from racecast.ingestion.validate import validate_and_split

    stem = Path(source_file).name.removesuffix(".json")
    if not stem.endswith(".racecard"):
        stem = f"{stem}.racecard"
    clean = clean_racecard_columns(
        text, f"{stem}.json", *_ENTITY_INPUT_COLUMNS, plausibility=plausibility, as_of=as_of
    )
    if clean is not None:  # every record valid: the batch path would keep them all
        return entities.entity_frame_from_columns(*clean)
    # a bad record or an implausible value, told without building tables
    found = racecard_problems(text, f"{stem}.json", plausibility=plausibility, as_of=as_of)
    if found and found[0]["reason"] == "file_rejected":
        raise RacecardError(f"{source_file}: {found[0]['detail']}", found)
    if found:
        raise _racecard_error(source_file, pd.DataFrame(found))
    parsed = parse_racecards({stem: lambda: text}, {"source": "racecards"})
    summary = parsed[3]
    if summary["files_rejected"]:
        raise RacecardError(f"{source_file}: {summary['files_rejected'][0]['error']}")
    # the same checks as batch ingestion (ranges, duplicates, field consistency)
    params = {"source": "racecards", "months": None, "plausibility": plausibility, "as_of": as_of}
    races, runners, quarantine, _ = validate_and_split(*parsed, params)
    if len(quarantine):
        raise _racecard_error(source_file, quarantine)
    if races.empty:
        raise RacecardError(f"{source_file}: no races in racecard")
    return entities.entity_frame(races, runners)


def _racecard_error(source_file: str, quarantine: pd.DataFrame) -> RacecardError:
    """The error of a rejected racecard: its first own problem named, every one listed."""
    own = quarantine[quarantine["reason"] != "race_quarantined"]
    shown = own if len(own) else quarantine
    first = shown.iloc[0]
    problems = [
        {k: (None if pd.isna(row[k]) else str(row[k])) for k in _PROBLEM_KEYS}
        for row in shown.to_dict("records")
    ]
    return RacecardError(
        f"{source_file}: race {first['race_id']} runner {first['horse_id']} field "
        f"{first['field']}: {first['detail'] or first['reason']}"
        + (f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""),
        problems,
    )


def online_features(
    entity_rows: pd.DataFrame,
    service_name: str,
    repo_path: str | Path = "feature_repo",
    params: dict[str, Any] | None = None,
    feature_store: Any = None,
    reader: OnlineReader | None = None,
    guard: Callable[[pd.DataFrame, pd.DataFrame], None] | None = None,
    kept: KeptRaces | None = None,
    with_odds: bool = False,
) -> pd.DataFrame:
    """Feature rows for runners from the online store, with the training set's columns.

    The state comes from the FeatureService's views through
    :class:`racecast.features.online_read.OnlineReader` (the provider's ``online_read``, the
    same values ``get_online_features`` returns), then goes through the same transform
    as the training set (``build_features_from_state``, which ``build_features`` calls:
    the reader's columns go to it without a state frame).

    Args:
        entity_rows: Output of ``racecard_entity_rows``.
        service_name: FeatureService to read (e.g. ``combined_v1``).
        repo_path: Feast repo folder.
        params: ``features.compute`` parameters (same as training).
        feature_store: An open FeatureStore to reuse.
        reader: An :class:`~racecast.features.online_read.OnlineReader` of
            ``service_name`` to use (a caller that reads many times keeps one: it
            resolves the service once and keeps the serialized entity keys); without
            it a reader is made for this call.
        guard: Called with the entity rows and the per-view event times of their online
            rows before anything is transformed (the point-in-time guard,
            :func:`racecast.inference.guard.check_point_in_time`); it raises to refuse.
        kept: The caller's kept races (:class:`~racecast.features.kept_races.KeptRaces`,
            used with one guard; pass the caller's ``reader``: a version is of one
            reader's connection, so each new reader starts afresh): on the SQLite online store a
            race whose rows equal a kept race's in every column the read, the guard and
            the fundamental transform read (:func:`kept_race_columns`), at the store's
            current ``PRAGMA data_version``, takes its kept fundamental rows and only its
            market features are computed from its odds; the other races are read,
            guarded and transformed, then kept. On any other store nothing is kept.
        with_odds: Also the racecard's ``odds_final`` as the last column (what the
            service hands the bundle beside the features).

    Returns:
        One row per runner: keys, off_time and every feature (then ``odds_final`` when
        ``with_odds``).

    Raises:
        ValueError: If ``reader`` reads another service than ``service_name``.
    """
    if reader is None:
        reader = OnlineReader(feature_store or store.get_store(repo_path), service_name)
    elif reader.service_name != service_name:
        raise ValueError(
            f"reader reads feature service {reader.service_name!r}, not {service_name!r}"
        )
    params = params or {}
    version = None if kept is None or not len(entity_rows) else reader.store_version()
    if version is None:
        # the decoded columns go to the transform as they are (no state frame for a request)
        numeric, text, times = reader.read_state(entity_rows)
        if guard is not None:
            guard(entity_rows, times)
        return transform.build_features_from_state(entity_rows, numeric, text, params, with_odds)
    return _kept_race_features(entity_rows, reader, guard, params, kept, version, with_odds)


def kept_race_columns(reader: OnlineReader) -> tuple[str, ...]:
    """The entity row columns a kept race's key holds: every column the fundamental
    transform reads (``transform.FUNDAMENTAL_CONTEXT``: the keys, ``off_time`` and every
    context column but the odds) and every join key the reader reads (the guard reads
    ``race_id``, ``off_time`` and the join keys)."""
    return tuple(dict.fromkeys((*transform.FUNDAMENTAL_CONTEXT, *reader.join_keys)))


def _kept_race_features(
    entity_rows: pd.DataFrame,
    reader: OnlineReader,
    guard: Callable[[pd.DataFrame, pd.DataFrame], None] | None,
    params: dict[str, Any],
    kept: KeptRaces,
    version: int,
    with_odds: bool,
) -> pd.DataFrame:
    """:func:`online_features` with kept races: read, guard and transform only the races
    not kept at ``version``, then the market features of every race from its odds."""
    races = KeptRaces.races(entity_rows, kept_race_columns(reader))
    # kept rows are of one reader's connection (data_version counts its commits), one store
    # content and one set of params
    state = (reader, version, repr(sorted(params.items())))
    found = [kept.get(state, key) for _, key in races]
    missing = [i for i, f in enumerate(found) if f is None]
    if missing:
        # the missing races' rows, race after race (the rows as they are when that is
        # their order: races one after another, all missing)
        order = np.concatenate([races[i][0] for i in missing])
        in_place = len(order) == len(entity_rows) and bool((order[1:] > order[:-1]).all())
        rows = entity_rows if in_place else entity_rows.iloc[order]
        numeric, text, times = reader.read_state(rows, version)
        if guard is not None:
            guard(rows, times)
        values, debut = transform.fundamental_features(rows, numeric, text, params)
        start = 0
        for i in missing:
            at, key = races[i]
            part = slice(start, start + len(at))
            start += len(at)
            kept.put(state, key, values[:, part], debut[part])
            found[i] = (values[:, part], debut[part])
    if len(races) == 1:
        values, debut = found[0]
    else:
        values = np.empty((found[0][0].shape[0], len(entity_rows)))
        debut = np.empty(len(entity_rows), dtype=bool)
        for (at, _), (race_values, race_debut) in zip(races, found, strict=True):
            values[:, at] = race_values
            debut[at] = race_debut
    return transform.features_from_fundamentals(entity_rows, values, debut, with_odds)


def feature_rows_to_json(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Serialise feature rows as JSON objects (NaN -> null, timestamps ISO 8601)."""
    text = frame.to_json(orient="records", date_format="iso", date_unit="s")
    return json.loads(text)
