"""State rows of the entities a new race changes, from the same functions as the tables.

On race day results arrive one race at a time. Recomputing every state table for each
result would cost seconds; :class:`StateHistory` keeps the history's official runs (with
their per-run quantities: speed figures, performance ratings, relative positions) and,
for a race run after all of them, computes the new state rows of the entities that ran
with :func:`racecast.features.state.view_state` over those entities' runs only. Each
entity's rows depend only on its own runs (and the standard times, which learn from
every earlier race: the history's :func:`~racecast.features.state.race_times` are kept
for that), so the rows equal the ones :func:`~racecast.features.state.build_state_tables`
gives for the whole history (tested). Anything else (a corrected result, a race run
before the latest one) is :meth:`StateHistory.rebuild`: the whole tables again.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from racecast.features import state
from racecast.features.specs import VIEWS, resolve_params

logger = logging.getLogger(__name__)

__all__ = ["OutOfOrderRace", "StateHistory", "latest_rows"]


class OutOfOrderRace(ValueError):
    """A race that cannot be appended: already in the history, or not after all of it."""


def _entity_mask(runs: pd.DataFrame, keys: list[str], wanted: pd.DataFrame) -> pd.Series:
    """Rows of ``runs`` whose ``keys`` equal one row of ``wanted``."""
    index = pd.MultiIndex.from_frame(runs[keys].astype("string"))
    return pd.Series(
        index.isin(pd.MultiIndex.from_frame(wanted[keys].astype("string"))), index=runs.index
    )


def latest_rows(table: pd.DataFrame, view: str) -> pd.DataFrame:
    """The latest state row of each entity of a state table (what the online store holds)."""
    keys = list(VIEWS[view].entities)
    ordered = table.sort_values(["event_timestamp", *keys], kind="stable")
    return ordered.drop_duplicates(keys, keep="last").reset_index(drop=True)


class StateHistory:
    """Official runs of a history, extended race by race.

    Args:
        races: Canonical races of the history.
        runners: Canonical runners of the history.
        params: ``features.compute`` parameters (as for ``build_state_tables``).
    """

    def __init__(
        self, races: pd.DataFrame, runners: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> None:
        self.params = resolve_params(params)
        self.runs_ = state.official_runs(races, runners, self.params)
        self.race_times_ = state.race_times(self.runs_)

    @property
    def last_off(self) -> pd.Timestamp | None:
        """Off time of the history's latest official race (None when empty)."""
        return None if self.runs_.empty else self.runs_["off_time"].max()

    def append(self, races: pd.DataFrame, runners: pd.DataFrame) -> dict[str, pd.DataFrame]:
        """Add races run after the whole history; the state rows they create.

        Args:
            races: Canonical rows of the new races.
            runners: Their canonical runners (results in ``post_*``).

        Returns:
            View name -> the new state rows (the entities that ran in an official race
            among ``races``; empty frames when none is official).

        Raises:
            OutOfOrderRace: If a race is already in the history or is not run after
                every race of it (use :meth:`rebuild`).
        """
        known = set(self.race_times_["race_id"])
        again = sorted(set(races["race_id"]) & known)
        if again:
            raise OutOfOrderRace(f"race {again[0]} is already in the state history")
        last = self.last_off
        new = state.official_runs(races, runners, self.params, earlier=self.race_times_)
        if last is not None and len(new) and new["off_time"].min() <= last:
            raise OutOfOrderRace(
                f"race {new.loc[new['off_time'].idxmin(), 'race_id']} is off at "
                f"{new['off_time'].min().isoformat()}, not after the history's last race "
                f"({last.isoformat()})"
            )
        if new.empty:
            return {view: state.view_state(view, new, self.params) for view in VIEWS}
        runs = pd.concat([self.runs_, new], ignore_index=True)
        first_new = new["off_time"].min() + state.post_race_delay(self.params)
        out = {}
        for view, spec in VIEWS.items():
            keys = list(spec.entities)
            wanted = new[keys].dropna().drop_duplicates()
            table = state.view_state(view, runs.loc[_entity_mask(runs, keys, wanted)], self.params)
            out[view] = table.loc[table["event_timestamp"] >= first_new].reset_index(drop=True)
        self.runs_ = runs
        self.race_times_ = pd.concat(
            [self.race_times_, state.race_times(new)], ignore_index=True
        )
        logger.info(
            "state history: %d new runs; %s",
            len(new),
            ", ".join(f"{v}={len(t)}" for v, t in out.items()),
        )
        return out

    def rebuild(self, races: pd.DataFrame, runners: pd.DataFrame) -> dict[str, pd.DataFrame]:
        """Replace the history with new tables; every state table, as the pipeline builds it.

        Args:
            races: Canonical races (the whole history).
            runners: Canonical runners.

        Returns:
            View name -> the whole state table.
        """
        self.runs_ = state.official_runs(races, runners, self.params)
        self.race_times_ = state.race_times(self.runs_)
        return {view: state.view_state(view, self.runs_, self.params) for view in VIEWS}
