"""The cross-record ingestion rules as one table of rule objects.

Each :class:`Rule` names a reason code, the table and field it blames, the check (a
boolean mask: True where a record breaks the rule) and the message, both over a
:class:`Tables` of canonical races and runners. ``RULES`` is the table; every path
evaluates these objects and none keeps a copy:

* batch validation (:func:`racecast.ingestion.validate.validate_and_split`, through
  ``racecast.ingestion.table_checks``) evaluates every rule over the whole batch;
* request validation (:mod:`racecast.ingestion.request`) evaluates the rules that
  can apply to a racecard (``results=False``) over the few rows of one request, in
  the rule's plain-Python form (``Rule.fast``, kept next to its vectorised check and
  tested against it); a rule without one sends the request to the batch path;
* the racecard result checks (:mod:`racecast.ingestion.racecard_checks`) read a
  result from its document, before any table exists; they call the same elementwise
  verdicts (:func:`beyond_field`, :func:`is_win`, :func:`tie_reason`), which take scalars and Series
  alike, and emit the same reason codes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pandas as pd

__all__ = [
    "POSITION_BEYOND_FIELD",
    "QUARANTINED_RACE_FIELD",
    "QUARANTINED_RUNNER_FIELD",
    "RACE_QUARANTINED",
    "RULES",
    "Records",
    "Rule",
    "Tables",
    "beyond_field",
    "is_win",
    "rules_for",
    "tie_reason",
]


def beyond_field(position: Any, field_size: Any) -> Any:
    """Whether a finishing position is beyond the field (scalars or Series)."""
    return position > field_size


def is_win(position: Any) -> Any:
    """Whether a finishing position wins (scalars or Series)."""
    return position == 1


def tie_reason(position: int) -> str:
    """The reason code of a shared position that is not a dead heat."""
    return TWO_WINNERS if is_win(position) else TIED_POSITION


TWO_WINNERS = "two_winners_without_dead_heat"
TIED_POSITION = "tied_position_without_dead_heat"
POSITION_BEYOND_FIELD = "position_beyond_field"
#: Reason of the rows of records quarantined with their race, and their fields: a race
#: blamed for its runners (``runners``), a runner for its race (``race``).
RACE_QUARANTINED = "race_quarantined"
QUARANTINED_RACE_FIELD = "runners"
QUARANTINED_RUNNER_FIELD = "race"


class Tables:
    """Canonical races and runners of a batch, with the per-race facts rules share.

    Args:
        races: Canonical races (``n_declared``, ``race_month`` and ``meeting_date`` too).
        runners: Canonical runners (``non_runner`` too).
        source: ``ingestion.source``.
    """

    def __init__(self, races: pd.DataFrame, runners: pd.DataFrame, source: str) -> None:
        self.races = races
        self.runners = runners
        self.source = source

    @cached_property
    def facts(self) -> pd.DataFrame:
        """Declared, active and winning runners per race (index of ``races``)."""
        runners = self.runners
        active = ~runners["non_runner"].fillna(False).astype(bool)
        post = runners["post_position"] if "post_position" in runners else None
        winners = active & is_win(post).fillna(False) if post is not None else active & False
        per_race = (
            pd.DataFrame(
                {
                    "race_id": runners["race_id"],
                    "declared": 1,
                    "active": active.astype(int),
                    "winners": winners.astype(int),
                }
            )
            .groupby("race_id", dropna=True)[["declared", "active", "winners"]]
            .sum()
        )
        facts = per_race.reindex(self.races["race_id"]).fillna(0).astype(int)
        facts.index = self.races.index
        return facts

    @cached_property
    def race_where(self) -> pd.Series:
        """``"<file>: race <race_id>"`` per race."""
        return _where(self.races, runners=False)

    @cached_property
    def runner_where(self) -> pd.Series:
        """``"<file>: race <race_id> horse <horse_id>"`` per runner."""
        return _where(self.runners, runners=True)

    @cached_property
    def official(self) -> pd.Series:
        """Per race: the status is official."""
        return (self.races["status"] == "official").fillna(False)

    @cached_property
    def lookup(self) -> pd.DataFrame:
        """Races by race_id (first copy)."""
        return self.races.drop_duplicates("race_id").set_index("race_id")

    @cached_property
    def runner_status(self) -> pd.Series:
        """Per runner: its race's status."""
        return self.runners["race_id"].map(self.lookup["status"])

    @cached_property
    def runner_official(self) -> pd.Series:
        """Per runner: its race is official."""
        return (self.runner_status == "official").fillna(False).astype(bool)

    @cached_property
    def active(self) -> pd.Series:
        """Per runner: not a non-runner."""
        return ~self.runners["non_runner"].fillna(False).astype(bool)

    @cached_property
    def field_size(self) -> pd.Series:
        """Per runner: active runners of its race, or more when the result names more
        starters than the source has rows for (``post_starters``; Hong Kong race 3676)."""
        facts = self.facts.copy()
        facts.index = self.races["race_id"]
        facts = facts[~facts.index.duplicated()]
        size = self.runners["race_id"].map(facts["active"]).astype("float64")
        if "post_starters" in self.lookup:
            starters = pd.to_numeric(self.lookup["post_starters"], errors="coerce")
            size = size.combine(self.runners["race_id"].map(starters).astype("float64"), max)
        return size.astype("Int64")

    @cached_property
    def tie(self) -> pd.Series:
        """Per runner: active, placed, and sharing its position with another runner."""
        runners = self.runners
        return (
            self.active
            & runners["post_position"].notna()
            & runners.duplicated(["race_id", "post_position"], keep=False)
        )


def _null(value: Any) -> bool:
    """Null as pandas sees it in a canonical column (None, NaN, NA, NaT)."""
    if value is None:
        return True
    if type(value) in _NEVER_NULL:  # the parser's plain values: no pd.isna call
        return False
    return bool(pd.isna(value)) if not isinstance(value, str) else False


_NEVER_NULL = frozenset({str, int, bool})


class Records:
    """Canonical race and runner rows of one request (plain dicts), for the fast forms.

    Args:
        races: Race rows.
        runners: Runner rows.
        source: ``ingestion.source``.
    """

    def __init__(
        self, races: list[dict[str, Any]], runners: list[dict[str, Any]], source: str
    ) -> None:
        self.races = races
        self.runners = runners
        self.source = source

    @cached_property
    def by_race(self) -> dict[Any, list[dict[str, Any]]]:
        """Runners per race_id of a race (runners of unknown races left out)."""
        out: dict[Any, list[dict[str, Any]]] = {race.get("race_id"): [] for race in self.races}
        for runner in self.runners:
            if runner.get("race_id") in out:
                out[runner.get("race_id")].append(runner)
        return out

    @staticmethod
    def active(runner: dict[str, Any]) -> bool:
        """Not a non-runner (a null flag counts as active, as in :class:`Tables`)."""
        return not (not _null(runner.get("non_runner")) and runner.get("non_runner"))

    @cached_property
    def fields(self) -> dict[Any, tuple[int, int]]:
        """Declared and active runners per race_id of a race."""
        return {
            race_id: (len(field), sum(1 for r in field if self.active(r)))
            for race_id, field in self.by_race.items()
        }

    def field(self, race: dict[str, Any]) -> tuple[int, int]:
        """Declared and active runners of a race."""
        return self.fields.get(race.get("race_id"), (0, 0))


def _shared_draw(rows: Records) -> bool:
    """An active runner's draw shared with any runner of its race."""
    for field in rows.by_race.values():
        draws = [r.get("draw") for r in field if not _null(r.get("draw"))]
        if len(set(draws)) == len(draws):  # no two runners share a draw
            continue
        for runner in field:
            draw = runner.get("draw")
            if rows.active(runner) and not _null(draw) and draws.count(draw) > 1:
                return True
    return False


def _where(frame: pd.DataFrame, runners: bool) -> pd.Series:
    """Name each record for messages: file, race and (for runners) horse."""
    text = (
        frame["source_file"].fillna("(unknown file)")
        + ": race "
        + frame["race_id"].fillna("(no race_id)")
    )
    if runners:
        text = text + " horse " + frame["horse_id"].fillna("(no horse_id)")
    return text.astype(object)


@dataclass(frozen=True)
class Rule:
    """One ingestion rule.

    Attributes:
        name: Stable reason code of the quarantine row.
        table: ``races`` or ``runners``: the records it blames.
        field: Field at fault.
        check: True per record that breaks the rule (NA counts as False).
        message: Detail per record.
        results: Whether it can only fire on result columns (never on a racecard).
        fast: The same rule over the few rows of one request (:class:`Records`): True
            when a record breaks it. None: the request path cannot evaluate it and
            takes the batch path.
    """

    name: str
    table: str
    field: str
    check: Callable[[Tables], pd.Series]
    message: Callable[[Tables], pd.Series]
    results: bool = False
    fast: Callable[[Records], bool] | None = None

    def problems(self, tables: Tables) -> pd.DataFrame:
        """The records that break the rule: ``row, field, reason, detail``."""
        hit = self.check(tables).fillna(False).astype(bool)
        detail = self.message(tables)
        return pd.DataFrame(
            {
                "row": hit.index[hit],
                "field": self.field,
                "reason": self.name,
                "detail": detail[hit].to_numpy(),
            }
        )

    def broken(self, tables: Tables) -> bool:
        """Whether any record breaks the rule."""
        return bool(self.check(tables).fillna(False).astype(bool).any())


def _position(t: Tables) -> pd.Series:
    return t.runners["post_position"]


RULES: tuple[Rule, ...] = (
    # races
    Rule(
        "invalid_value",
        "races",
        "source",
        lambda t: t.races["source"].notna() & (t.races["source"] != t.source),
        lambda t: (
            t.race_where
            + ": source = "
            + t.races["source"].fillna("")
            + f" differs from ingestion.source {t.source!r}"
        ),
        fast=lambda r: any(
            not _null(race.get("source")) and race.get("source") != r.source for race in r.races
        ),
    ),
    Rule(
        "invalid_value",
        "races",
        "race_month",
        lambda t: (
            t.races["race_month"].notna()
            & (t.races["race_month"] != t.races["meeting_date"].str[:7])
        ),
        lambda t: (
            t.race_where
            + ": race_month = "
            + t.races["race_month"].fillna("")
            + " is not the month of meeting_date "
            + t.races["meeting_date"].fillna("(null)")
        ),
        fast=lambda r: any(
            not _null(race.get("race_month"))
            and not _null(race.get("meeting_date"))
            and race.get("race_month") != race.get("meeting_date")[:7]
            for race in r.races
        ),
    ),
    Rule(
        "race_without_runners",
        "races",
        "runners",
        lambda t: t.facts["active"] == 0,
        lambda t: (
            t.race_where
            + ": the race has "
            + t.facts["declared"].astype(str)
            + " declared runners and no active one"
        ),
        fast=lambda r: any(r.field(race)[1] == 0 for race in r.races),
    ),
    Rule(
        "field_size_mismatch",
        "races",
        "n_runners",
        lambda t: (
            (t.races["n_declared"] != t.facts["declared"])
            | (t.races["n_runners"] != t.facts["active"])
        ),
        lambda t: (
            t.race_where
            + ": n_declared/n_runners = "
            + t.races["n_declared"].astype(str)
            + "/"
            + t.races["n_runners"].astype(str)
            + " but the runners table has "
            + t.facts["declared"].astype(str)
            + "/"
            + t.facts["active"].astype(str)
        ),
        fast=lambda r: any(
            (race.get("n_declared"), race.get("n_runners")) != r.field(race) for race in r.races
        ),
    ),
    Rule(
        "official_without_winner",
        "races",
        "post_position",
        lambda t: t.official & (t.facts["active"] > 0) & (t.facts["winners"] == 0),
        lambda t: t.race_where + ": an official result without a runner at position 1",
        results=True,
    ),
    Rule(
        "dead_heat_flag_mismatch",
        "races",
        "post_dead_heat_win",
        lambda t: (
            t.official
            & t.races["post_dead_heat_win"].notna()
            & (t.races["post_dead_heat_win"] != (t.facts["winners"] > 1))
        ),
        lambda t: (
            t.race_where
            + ": post_dead_heat_win = "
            + t.races["post_dead_heat_win"].astype(str)
            + " but "
            + t.facts["winners"].astype(str)
            + " runners are at position 1"
        ),
        results=True,
    ),
    # runners
    Rule(
        "runner_unknown_race",
        "runners",
        "race_id",
        lambda t: ~t.runners["race_id"].isin(t.races["race_id"]),
        lambda t: t.runner_where + ": race_id is not in the races table",
        fast=lambda r: any(runner.get("race_id") not in r.by_race for runner in r.runners),
    ),
    Rule(
        "duplicate_draw",
        "runners",
        "draw",
        lambda t: (
            t.active
            & t.runners["draw"].notna()
            & t.runners.duplicated(["race_id", "draw"], keep=False)
        ),
        lambda t: (
            t.runner_where
            + ": draw "
            + t.runners["draw"].astype(str)
            + " is shared by another active runner"
        ),
        fast=_shared_draw,
    ),
    Rule(
        "result_on_unofficial_race",
        "runners",
        "post_position",
        lambda t: (
            ~t.runner_official
            & t.runners["race_id"].isin(t.races["race_id"])
            & _position(t).notna()
        ),
        lambda t: (
            t.runner_where
            + ": post_position = "
            + _position(t).astype(str)
            + " but the race status is "
            + t.runner_status.fillna("(null)").astype(str)
        ),
        results=True,
    ),
    Rule(
        "non_runner_with_position",
        "runners",
        "post_position",
        lambda t: t.runner_official & ~t.active & _position(t).notna(),
        lambda t: t.runner_where + ": a non-runner has post_position = " + _position(t).astype(str),
        results=True,
    ),
    Rule(
        POSITION_BEYOND_FIELD,
        "runners",
        "post_position",
        lambda t: (
            t.runner_official
            & t.active
            & _position(t).notna()
            & beyond_field(_position(t), t.field_size)
        ),
        lambda t: (
            t.runner_where
            + ": post_position = "
            + _position(t).astype(str)
            + " is beyond the field of "
            + t.field_size.astype(str)
            + " runners"
        ),
        results=True,
    ),
    Rule(
        "dead_heat_without_tie",
        "runners",
        "post_dead_heat",
        lambda t: t.runner_official & t.active & t.runners["post_dead_heat"].eq(True) & ~t.tie,
        lambda t: (
            t.runner_where
            + ": post_dead_heat is true but no other runner shares post_position = "
            + _position(t).astype(str)
        ),
        results=True,
    ),
    Rule(
        TWO_WINNERS,
        "runners",
        "post_dead_heat",
        lambda t: (
            t.runner_official & t.tie & t.runners["post_dead_heat"].eq(False) & is_win(_position(t))
        ),
        lambda t: (
            t.runner_where
            + ": shares post_position = 1 with another runner but post_dead_heat is false"
        ),
        results=True,
    ),
    Rule(
        TIED_POSITION,
        "runners",
        "post_dead_heat",
        lambda t: (
            t.runner_official
            & t.tie
            & t.runners["post_dead_heat"].eq(False)
            & ~is_win(_position(t))
        ),
        lambda t: (
            t.runner_where
            + ": shares post_position = "
            + _position(t).astype(str)
            + " with another runner but post_dead_heat is false"
        ),
        results=True,
    ),
)


def rules_for(table: str, results: bool = True) -> tuple[Rule, ...]:
    """The rules of one table (``races`` or ``runners``); without results when asked."""
    return tuple(r for r in RULES if r.table == table and (results or not r.results))
