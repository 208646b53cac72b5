"""Nodes of the features pipeline.

State tables are computed vectorised from the primary tables, registered in Feast, loaded
into the online store and joined back point-in-time to build the training set. The
training set is built only through Feast's ``get_historical_features`` followed by the
shared ``build_features`` transform: the same two steps the online path runs.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from racecast.features import entities, state, store, transform
from racecast.features.specs import CARD_ORDER, LABEL_COLUMNS, ODDS_CAPPED, VIEWS

logger = logging.getLogger(__name__)


def build_state_tables(races: pd.DataFrame, runners: pd.DataFrame, params: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """Compute every entity's post-race state table.

    Args:
        races: Primary races table.
        runners: Primary runners table (results in ``post_*`` columns).
        params: ``features`` parameters.

    Returns:
        One frame per feature view, keyed by view name.
    """
    tables = state.build_state_tables(races, runners, params.get("compute", {}))
    missing = set(VIEWS) - set(tables)
    if missing:
        raise ValueError(f"state tables missing for feature views: {sorted(missing)}")
    for name, table in tables.items():
        logger.info("state table %s: %d rows", name, len(table))
    return {name: tables[name] for name in VIEWS}


def build_entity_rows(races: pd.DataFrame, runners: pd.DataFrame) -> pd.DataFrame:
    """One row per active runner: keys, off time, racecard context and labels.

    Args:
        races: Primary races table.
        runners: Primary runners table.

    Returns:
        The entity rows for Feast's point-in-time join.
    """
    return entities.entity_frame(races, runners)


def apply_feature_store(params: dict[str, Any], *state_tables: pd.DataFrame) -> dict[str, Any]:
    """``feast apply`` the repo once its state tables are written.

    Args:
        params: ``features`` parameters (``repo_path``).
        *state_tables: The saved state tables (inputs only to order this node after them).

    Returns:
        Summary of the applied objects.
    """
    return store.apply_repo(params["repo_path"])


def materialize_online(feast_apply_summary: dict[str, Any], entity_rows: pd.DataFrame, params: dict[str, Any]) -> dict[str, Any]:
    """Load state into the online store, incrementally, up to a cut-off.

    The cut-off is ``features.materialize_until`` (a date or timestamp; a date means
    "results of races before that day") or, when null, just after the last race.

    Args:
        feast_apply_summary: Output of ``apply_feature_store`` (orders the nodes).
        entity_rows: Entity rows, for the default cut-off.
        params: ``features`` parameters.

    Returns:
        The materialization window and the number of state rows it covers.
    """
    until = params.get("materialize_until")
    if until is None:
        end = entity_rows["event_timestamp"].max() + pd.Timedelta(minutes=1)
    else:
        try:
            end = pd.Timestamp(until)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"parameter features.materialize_until: cannot parse {until!r} as a date/time") from exc
        end = end.tz_localize("UTC") if end.tzinfo is None else end.tz_convert("UTC")
    fs = store.get_store(params["repo_path"])
    window = store.materialize(fs, end, repo_path=params["repo_path"])
    return {**window, "feature_views": feast_apply_summary["feature_views"]}


def race_chunks(race_id: pd.Series, max_rows: int | None) -> list[np.ndarray]:
    """Row positions of consecutive groups of whole races of at most about ``max_rows`` rows.

    Races are taken in the order of their first row and cut where the running row count
    crosses a multiple of ``max_rows`` (a race is never split, so a chunk may exceed it by
    less than one race). ``None`` or a frame no larger than ``max_rows``: one chunk.
    """
    n = len(race_id)
    if not max_rows or n <= max_rows:
        return [np.arange(n)]
    codes, _ = pd.factorize(race_id, use_na_sentinel=False)
    sizes = np.bincount(codes)
    chunk_of_row = ((np.cumsum(sizes) - sizes) // int(max_rows))[codes]
    order = np.argsort(chunk_of_row, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(chunk_of_row[order])) + 1)


def _training_rows(fs: Any, labelled: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    """The training rows of ``labelled`` (whole races): Feast's point-in-time join, then the transform."""
    served = store.historical_state(fs, labelled, params["training_service"])
    features = transform.build_features(labelled, served, params.get("compute", {}))
    del served
    return pd.concat(
        [features.reset_index(drop=True), labelled[["odds_final", ODDS_CAPPED, CARD_ORDER, *LABEL_COLUMNS]].reset_index(drop=True)],
        axis=1,
    )


def build_training_set(entity_rows: pd.DataFrame, feast_apply_summary: dict[str, Any], params: dict[str, Any]) -> pd.DataFrame:
    """Point-in-time join through Feast, then the shared transform, in chunks of whole races.

    Every feature of a runner depends only on its own race and on state strictly before
    it, so the chunks (``training_chunk_runners`` runners each, about) bound the join's
    memory without changing a value; the rows come back in ``entity_rows``' order.

    Args:
        entity_rows: One row per runner (races with an official result only are kept).
        feast_apply_summary: Output of ``apply_feature_store`` (orders the nodes).
        params: ``features`` parameters (``repo_path``, ``training_service``,
            ``training_chunk_runners``).

    Returns:
        Keys, off time, ``odds_final``, ``odds_capped`` (the price is the source's display
        cap: a term of the market_corrected model), ``cloth_number``, labels and every
        feature; one row per runner.
    """
    labelled = entity_rows[entity_rows["won"].notna()].reset_index(drop=True)
    fs = store.get_store(params["repo_path"])
    chunks = race_chunks(labelled["race_id"], params.get("training_chunk_runners"))
    if len(chunks) == 1:
        out = _training_rows(fs, labelled, params)
    else:
        parts = []
        for i, rows in enumerate(chunks):
            parts.append(_training_rows(fs, labelled.iloc[rows], params))
            logger.info("training set: chunk %d/%d, %d runners", i + 1, len(chunks), len(rows))
        out = pd.concat(parts, ignore_index=True)
        del parts
        positions = np.concatenate(chunks)
        if (np.diff(positions) < 0).any():  # races were not contiguous: back to entity_rows' order
            out = out.iloc[np.argsort(positions, kind="stable")].reset_index(drop=True)
    if out.duplicated(["race_id", "horse_id"]).any() or len(out) != len(labelled):
        raise RuntimeError("training set: expected exactly one row per runner")
    logger.info("training set: %d runners in %d races, %d columns", len(out), out["race_id"].nunique(), out.shape[1])
    return out
