"""The point-in-time guard: one check for every path that reads the online store.

The online store holds each entity's latest state. Once a race's result has been pushed
(or ingested and materialized), the state of its runners is stamped after its off, so
reading it "as if upcoming" would hand the race its own result (``days_since_last_run``
0, a win counted in the form). :func:`check_point_in_time` refuses that: a race is
answered from the online store only when every state row of every runner is stamped
strictly before the race's off. The HTTP app maps :class:`LookAheadError` to 409, the CLI
to exit 2 and the ``scoring`` pipeline fails; a past race is answered point in time from
the offline store on an explicit ``as_of`` request instead
(:meth:`racecast.inference.service.InferenceService.features_as_of`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from racecast.features.columns import utc_ns_array
from racecast.features.specs import VIEWS

__all__ = ["LookAheadError", "Violation", "check_point_in_time", "point_in_time_violations"]


@dataclass(frozen=True)
class Violation:
    """A runner whose online state is not older than its race's off."""

    race_id: str
    view: str
    entity: str
    state_time: pd.Timestamp
    off_time: pd.Timestamp

    def message(self) -> str:
        """One line naming the race, the entity and both timestamps."""
        return (
            f"race {self.race_id} (off {self.off_time.isoformat()}): {self.view} of {self.entity} "
            f"holds state from {self.state_time.isoformat()}, not before the off"
        )


class LookAheadError(ValueError):
    """The online store already knows results of races being scored as upcoming."""

    def __init__(self, violations: list[Violation]) -> None:
        self.violations = violations
        races = sorted({v.race_id for v in violations})
        super().__init__(
            f"{violations[0].message()}; {len(races)} race(s) affected ({', '.join(races[:5])}"
            f"{', ...' if len(races) > 5 else ''}): their results are already in the online "
            "store, so they cannot be scored as upcoming. Score them point in time from the "
            "offline store with as_of (CLI --as-of, API ?as_of=)"
        )


def point_in_time_violations(entity_rows: pd.DataFrame, times: pd.DataFrame) -> list[Violation]:
    """Runners whose online state rows are stamped at or after their race's off.

    Args:
        entity_rows: Racecard entity rows (``race_id``, ``off_time`` and the join keys).
        times: Per view, epoch seconds of each runner's online state row (NaN: none),
            aligned to ``entity_rows`` (:meth:`racecast.features.online_read.OnlineReader.read_with_times`).

    Returns:
        One violation per (runner, view), view by view in row order (empty when the race
        is upcoming for every entity).

    Raises:
        ValueError: If an off time is null or not a timestamp.
    """
    if times.empty or not len(entity_rows):
        return []
    off_ns = utc_ns_array(entity_rows["off_time"], "off_time").asi8
    stamps = times.to_numpy(dtype=np.float64, na_value=np.nan)
    # one comparison of every (runner, view) stamp with the runner's off (NaN: never late)
    late = stamps >= (off_ns / 1e9)[:, None]
    if not late.any():
        return []
    found = []
    for j, view in enumerate(times.columns):
        keys = list(VIEWS[view].entities) if view in VIEWS else []
        for i in np.flatnonzero(late[:, j]).tolist():
            row = entity_rows.iloc[i]
            entity = ", ".join(f"{k}={row[k]}" for k in keys if k in entity_rows.columns)
            found.append(
                Violation(
                    race_id=str(row["race_id"]),
                    view=view,
                    entity=entity or "?",
                    state_time=pd.Timestamp(stamps[i, j], unit="s", tz="UTC"),
                    off_time=pd.Timestamp(off_ns[i], unit="ns", tz="UTC"),
                )
            )
    return found


def check_point_in_time(entity_rows: pd.DataFrame, times: pd.DataFrame) -> None:
    """Raise :class:`LookAheadError` when any runner's online state is not older than its off.

    Args:
        entity_rows: As for :func:`point_in_time_violations`.
        times: As for :func:`point_in_time_violations`.

    Raises:
        LookAheadError: Naming the first race, entity and both timestamps.
    """
    violations = point_in_time_violations(entity_rows, times)
    if violations:
        raise LookAheadError(violations)
