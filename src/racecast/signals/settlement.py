"""Settlement of bets from results (idempotent).

:func:`settle` fills ``closing_odds``, ``clv``, ``result`` and ``pnl`` of the bets on the
runners of a results frame (:func:`prepare_results` validates it and counts the
dead-heat divisor); settling the same results again changes nothing, corrected results
update the bets. :func:`results_from_tables` builds that frame from the canonical
``races`` and ``runners`` tables.

**Dead heats.** A back bet on one of ``k`` runners dead-heating for first place is
settled by the usual bookmaker rule: the stake is divided by ``k``, one part is paid at
full odds and the rest is lost, so ``pnl = stake * (odds / k - 1)`` (``result`` is
``"won"``). ``k`` is the number of runners of the race with ``won`` true in the results
frame, which must therefore list every winner of a race it settles.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
from sqlalchemy import Engine, bindparam, select, tuple_, update
from sqlalchemy.engine import URL

from racecast.data.schema import TOOK_NO_PART
from racecast.signals.db import session_scope
from racecast.signals.models import Bet, utcnow
from racecast.signals.publish import _check_keys, _float_column, _open

logger = logging.getLogger(__name__)

__all__ = ["SETTLEMENT_COLUMNS", "prepare_results", "results_from_tables", "settle"]

SETTLEMENT_COLUMNS = ("closing_odds", "clv", "result", "pnl")
_IN_CHUNK = 500


def _bool_column(frame: pd.DataFrame, column: str, what: str) -> pd.Series:
    """A nullable boolean column from bools, 0/1 or their nullable forms."""
    values = frame[column]
    try:
        result = values.astype("boolean")
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{what}: column '{column}' must be boolean (true/false/missing): {exc}"
        ) from exc
    numeric = pd.to_numeric(values, errors="coerce")
    bad = numeric.notna() & ~numeric.isin([0, 1])
    if bad.any():
        raise ValueError(
            f"{what}: column '{column}' must be boolean, got {values[bad].head(3).tolist()}"
        )
    return result


def prepare_results(results: pd.DataFrame) -> pd.DataFrame:
    """Validate a results frame and derive the settlement inputs of each runner.

    Args:
        results: One row per runner: ``race_id``, ``horse_id``; ``won`` (bool; missing:
            not known yet) and/or ``position`` (used when ``won`` is absent: 1 wins,
            anything else, missing included, loses); closing price as ``closing_odds`` or
            ``starting_price`` (decimal > 1, optional); ``void`` (bool, optional: a
            non-runner or a void race).

    Returns:
        A new frame ``race_id, horse_id, void, won, closing_odds, winners`` where
        ``winners`` is the number of runners of the race with ``won`` true (the dead-heat
        divisor).

    Raises:
        ValueError: If a column is missing or invalid, or a runner repeats.
    """
    what = "results frame"
    if not isinstance(results, pd.DataFrame):
        raise TypeError(f"{what} must be a pandas DataFrame, got {type(results).__name__}")
    missing = [c for c in ("race_id", "horse_id") if c not in results.columns]
    if missing:
        raise ValueError(f"{what} is missing column(s) {missing}")
    if "won" not in results.columns and "position" not in results.columns:
        raise ValueError(f"{what} needs a 'won' or a 'position' column")
    if "closing_odds" in results.columns and "starting_price" in results.columns:
        raise ValueError(f"{what} has both 'closing_odds' and 'starting_price'; give one")
    frame = _check_keys(results.reset_index(drop=True), what)
    out = frame[["race_id", "horse_id"]].copy()
    if "void" in frame.columns:
        out["void"] = _bool_column(frame, "void", what).fillna(False).astype(bool)
    else:
        out["void"] = False
    if "won" in frame.columns:
        out["won"] = _bool_column(frame, "won", what)
    else:
        position = _float_column(frame, "position", what)
        out["won"] = pd.array(position == 1, dtype="boolean")
    price_column = "closing_odds" if "closing_odds" in frame.columns else "starting_price"
    out["closing_odds"] = (
        _float_column(frame, price_column, what) if price_column in frame.columns else np.nan
    )
    bad = out["closing_odds"].notna() & ~(out["closing_odds"] > 1)
    if bad.any():
        raise ValueError(
            f"{what}: column '{price_column}' must be decimal odds > 1 (or missing); {int(bad.sum())} rows are not"
        )
    winning = (out["won"].fillna(False).astype(bool) & ~out["void"]).astype(int)
    out["winners"] = winning.groupby(out["race_id"]).transform("sum").astype(int)
    return out


def _settlement(bets: pd.DataFrame) -> pd.DataFrame:
    """New ``closing_odds, clv, result, pnl`` of bets joined with their prepared results."""
    out = pd.DataFrame(index=bets.index)
    out["closing_odds"] = bets["closing_odds_new"].astype(float)
    out["clv"] = bets["odds"] / out["closing_odds"] - 1.0
    won = bets["won"].fillna(False).astype(bool)
    out["result"] = np.where(bets["void"], "void", np.where(won, "won", "lost"))
    divisor = bets["winners"].clip(lower=1)
    out["pnl"] = np.where(
        bets["void"],
        0.0,
        np.where(won, bets["stake"] * (bets["odds"] / divisor - 1.0), -bets["stake"]),
    )
    return out


def _none_if_nan(value):
    return None if isinstance(value, float) and math.isnan(value) else value


def settle(url: str | URL | Engine, results: pd.DataFrame) -> dict:
    """Settle the bets on the runners of ``results`` (idempotent).

    For each bet whose ``(race_id, horse_id)`` is in ``results``: ``closing_odds`` from
    the results, ``clv = odds / closing_odds - 1`` (null without a closing price),
    ``result`` ``"void"`` (void runner or race: ``pnl = 0``), ``"won"`` (``pnl = stake *
    (odds / k - 1)``, ``k`` the number of dead-heating winners, 1 normally) or ``"lost"``
    (``pnl = -stake``). Bets whose runner has ``won`` missing and is not void stay open.
    A bet is written only when a value changes; ``settled_at`` is the time of that write.

    Args:
        url: Database URL (or engine), migrated to the newest revision.
        results: Results frame, see :func:`prepare_results`.

    Returns:
        ``{"matched", "settled", "corrected", "unchanged", "unresolved"}``: bets found for
        the results; newly settled; settled before with other values (a corrected result);
        settled before with the same values; left open (outcome not known).

    Raises:
        ValueError: Invalid results frame.
        SignalsDatabaseError: Bad URL, unreachable database or schema not migrated.
    """
    prepared = prepare_results(results)
    engine, owned = _open(url)
    counts = dict.fromkeys(("matched", "settled", "corrected", "unchanged", "unresolved"), 0)
    try:
        with session_scope(engine) as session:
            table = Bet.__table__
            keys = list(prepared[["race_id", "horse_id"]].itertuples(index=False, name=None))
            found = []
            for start in range(0, len(keys), _IN_CHUNK):
                chunk = keys[start : start + _IN_CHUNK]
                found.extend(
                    session.execute(
                        select(table).where(tuple_(table.c.race_id, table.c.horse_id).in_(chunk))
                    )
                    .mappings()
                    .all()
                )
            if found:
                bets = pd.DataFrame([dict(row) for row in found])
                joined = bets.merge(
                    prepared.rename(columns={"closing_odds": "closing_odds_new"}),
                    on=["race_id", "horse_id"],
                    how="left",
                    validate="many_to_one",
                )
                counts["matched"] = len(joined)
                resolved = joined["void"] | joined["won"].notna()
                counts["unresolved"] = int((~resolved).sum())
                joined = joined[resolved]
                new = _settlement(joined)
                same = pd.Series(True, index=joined.index)
                for column in ("closing_odds", "clv", "pnl"):
                    old_values = joined[column].astype(float)
                    same &= (old_values == new[column]) | (old_values.isna() & new[column].isna())
                same &= joined["result"].fillna("").astype(str) == new["result"]
                changed = ~same
                was_open = joined["result"].isna()
                counts["unchanged"] = int(same.sum())
                counts["settled"] = int((changed & was_open).sum())
                counts["corrected"] = int((changed & ~was_open).sum())
                now = utcnow()
                updates = [
                    {
                        "bet_id": int(bet_id),
                        "closing_odds": _none_if_nan(float(closing)),
                        "clv": _none_if_nan(float(clv)),
                        "result": str(result),
                        "pnl": float(pnl),
                        "settled_at": now,
                    }
                    for bet_id, closing, clv, result, pnl in zip(
                        joined.loc[changed, "id"],
                        new.loc[changed, "closing_odds"],
                        new.loc[changed, "clv"],
                        new.loc[changed, "result"],
                        new.loc[changed, "pnl"],
                        strict=True,
                    )
                ]
                if updates:
                    statement = (
                        update(table)
                        .where(table.c.id == bindparam("bet_id"))
                        .values({c: bindparam(c) for c in (*SETTLEMENT_COLUMNS, "settled_at")})
                    )
                    session.connection().execute(statement, updates)
    finally:
        if owned:
            engine.dispose()
    logger.info("settled bets: %s", counts)
    return counts


def results_from_tables(races: pd.DataFrame, runners: pd.DataFrame) -> pd.DataFrame:
    """The settlement results of the canonical ``races`` and ``runners`` tables.

    Official races give ``won = post_won``, ``position = post_position``,
    ``starting_price = post_starting_price`` and ``void = non_runner`` or an outcome of
    ``took_no_part`` (refunded); every runner of a ``void`` race is void; ``pending``
    races are left out (their bets stay open).

    Args:
        races: Canonical races table (``race_id``, ``status``).
        runners: Canonical runners table (``race_id``, ``horse_id``, ``non_runner``,
            ``post_won``, ``post_position``, ``post_starting_price``).

    Returns:
        A results frame for :func:`settle`.

    Raises:
        ValueError: If a column is missing.
    """
    for name, frame, columns in (
        ("races", races, ["race_id", "status"]),
        (
            "runners",
            runners,
            [
                "race_id",
                "horse_id",
                "non_runner",
                "post_won",
                "post_position",
                "post_starting_price",
            ],
        ),
    ):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError(f"{name} table is missing column(s) {missing}")
    status = races.set_index("race_id")["status"]
    joined = runners.assign(status=runners["race_id"].map(status))
    joined = joined[joined["status"].isin(["official", "void"])]
    race_void = (joined["status"] == "void").to_numpy()
    # a runner that took no part is refunded like a non-runner (its ``won`` is null)
    took_no_part = np.zeros(len(joined), dtype=bool)
    if "post_outcome" in joined.columns:
        took_no_part = (joined["post_outcome"].astype("string") == TOOK_NO_PART).fillna(False).to_numpy(bool)
    return pd.DataFrame(
        {
            "race_id": joined["race_id"].astype(str).to_numpy(),
            "horse_id": joined["horse_id"].astype(str).to_numpy(),
            "won": pd.array(joined["post_won"], dtype="boolean"),
            "position": pd.array(joined["post_position"], dtype="Int64"),
            "starting_price": joined["post_starting_price"].astype(float).to_numpy(),
            "void": joined["non_runner"].fillna(False).astype(bool).to_numpy()
            | took_no_part
            | race_void,
        }
    )
