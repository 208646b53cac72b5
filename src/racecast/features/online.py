"""Online features for a racecard: Feast online store + the shared transform.

The same two steps as the training set: read the FeatureService's state (here online,
there point-in-time), then ``racecast.features.transform.build_features``. Debutants have
no state: they get explicit missing values and ``is_debut = 1``, never an error.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from racecast.features import state, store, transform

logger = logging.getLogger(__name__)


class RacecardError(ValueError):
    """A racecard that cannot be scored; the message names the file and field."""


def racecard_entity_rows(text: str, source_file: str = "<request>") -> pd.DataFrame:
    """Parse a racecard (JSON contract) into entity rows, as ingestion would.

    Args:
        text: The racecard JSON text.
        source_file: Name used in error messages.

    Returns:
        One entity row per active runner (labels empty: the races are not run yet).

    Raises:
        RacecardError: If the file is not a valid racecard or any record was rejected.
    """
    from racecast.ingestion.racecards import parse_racecards
    from racecast.ingestion.validate import validate_and_split

    stem = Path(source_file).name.removesuffix(".json")
    if not stem.endswith(".racecard"):
        stem = f"{stem}.racecard"
    parsed = parse_racecards({stem: lambda: text}, {"source": "racecards"})
    summary = parsed[3]
    if summary["files_rejected"]:
        raise RacecardError(f"{source_file}: {summary['files_rejected'][0]['error']}")
    # the same checks as batch ingestion (ranges, duplicates, field consistency)
    races, runners, quarantine, _ = validate_and_split(*parsed, {"source": "racecards", "months": None})
    if len(quarantine):
        first = quarantine.iloc[0]
        raise RacecardError(
            f"{source_file}: race {first['race_id']} runner {first['horse_id']} field "
            f"{first['field']}: {first['detail'] or first['reason']}"
            + (f" (and {len(quarantine) - 1} more problems)" if len(quarantine) > 1 else "")
        )
    if races.empty:
        raise RacecardError(f"{source_file}: no races in racecard")
    return state.entity_frame(races, runners)


def online_features(
    entity_rows: pd.DataFrame,
    service_name: str,
    repo_path: str | Path = "feature_repo",
    params: dict[str, Any] | None = None,
    feature_store: Any = None,
) -> pd.DataFrame:
    """Feature rows for runners from the online store, with the training set's columns.

    Args:
        entity_rows: Output of ``racecard_entity_rows``.
        service_name: FeatureService to read (e.g. ``combined_v1``).
        repo_path: Feast repo folder.
        params: ``features.compute`` parameters (same as training).
        feature_store: An open FeatureStore to reuse (the service keeps one).

    Returns:
        One row per runner: keys, off_time and every feature.
    """
    fs = feature_store or store.get_store(repo_path)
    served = store.online_state(fs, entity_rows, service_name)
    return transform.build_features(entity_rows, served, params or {})


def feature_rows_to_json(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Serialise feature rows as JSON objects (NaN -> null, timestamps ISO 8601)."""
    text = frame.to_json(orient="records", date_format="iso", date_unit="s")
    return json.loads(text)
