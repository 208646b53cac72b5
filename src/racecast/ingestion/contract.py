"""Machine-readable form of the racecard and results JSON contract (version 1.1).

The human-readable contract is ``docs/racecard_format.md`` (racecast's public input format);
these pydantic v2 models are its executable form, and ``write_json_schema`` exports them
as the JSON Schema ``docs/racecard.schema.json``.

The models validate in *strict* mode against JSON text (``model_validate_json``): an
integer field rejects ``7.0`` and ``"7"``, a string field rejects numbers, timestamps must
be ISO 8601 strings with a UTC offset. Unknown fields are ignored (the contract allows
fields to be added). The parser (``racecast.ingestion.racecards``) validates every
meeting, race, runner and result on its own so that one bad record never rejects a file.

Additions to the v1 example, all optional: ``rail`` and ``rating_band`` on a race,
``horse_country`` on a runner, ``dead_heat`` on a finisher.

Version 1.1 is backward compatible: every valid v1 file is a valid 1.1 file, both format
strings are accepted (``RACECARD_FORMATS``, ``RESULTS_FORMATS``) and read by the same
rules. It adds, all optional: ``odds.final_capped`` (the final price is the pool's
display cap, so the price was at least that), ``race_grade`` and ``source_race_id`` on a
race, the ``took_no_part`` outcome, and standby-starter draws above the field
(:func:`draw_limit`).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    model_validator,
)
from pydantic_core import PydanticCustomError

from racecast.data.schema import OUTCOMES, RACE_GRADES, RACE_TYPES, SURFACES

RACECARD_FORMAT = "racecast.racecard/1"
RESULTS_FORMAT = "racecast.results/1"
RACECARD_FORMAT_1_1 = "racecast.racecard/1.1"
RESULTS_FORMAT_1_1 = "racecast.results/1.1"
#: Accepted ``format`` strings: v1 files stay valid, 1.1 is read by the same rules.
RACECARD_FORMATS = (RACECARD_FORMAT, RACECARD_FORMAT_1_1)
RESULTS_FORMATS = (RESULTS_FORMAT, RESULTS_FORMAT_1_1)
RESULT_STATUSES = ("official", "void")

#: Entity ids (race, horse, jockey, trainer): printable, no surrounding whitespace, and
#: not starting with "?" (reserved for the placeholder ids of unreadable quarantined records).
ID_PATTERN = r"^[^?\s\x00-\x1f\x7f](?:[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f])?$"
ID_RULE = (
    "a non-empty string of at most 100 printable characters, without leading or trailing "
    "whitespace and not starting with '?'"
)

EntityId = Annotated[str, Field(min_length=1, max_length=100, pattern=ID_PATTERN)]
Odds = Annotated[float, Field(gt=1.0, description="Decimal odds including the stake, > 1.0.")]

#: Off times must lie in these years (also keeps them inside pandas' nanosecond range).
OFF_TIME_YEARS = (1900, 2199)


def _off_time_in_range(value: dt.datetime) -> dt.datetime:
    """Reject off times outside ``OFF_TIME_YEARS``.

    Args:
        value: A timezone-aware off time.

    Returns:
        ``value`` unchanged.

    Raises:
        PydanticCustomError: ``out_of_range`` when the year is outside the bounds.
    """
    low, high = OFF_TIME_YEARS
    if not low <= value.year <= high:
        raise PydanticCustomError(
            "out_of_range",
            "off_time must lie between the years {low} and {high}",
            {"low": low, "high": high},
        )
    return value


OffTime = Annotated[AwareDatetime, AfterValidator(_off_time_in_range)]

#: Standby starters (Hong Kong) are drawn after the field, so a draw may exceed the
#: declared runners: up to ``max(declared, STANDBY_FIELD) + STANDBY_DRAWS`` it is kept with
#: a ``draw_above_field`` warning in the ingestion report; above that it is quarantined.
STANDBY_FIELD = 14
STANDBY_DRAWS = 4


def draw_limit(declared: int) -> int:
    """The largest draw a race with ``declared`` runners may give (standby starters).

    Args:
        declared: Declared runners of the race, non-runners included.

    Returns:
        ``max(declared, STANDBY_FIELD) + STANDBY_DRAWS``.
    """
    return max(declared, STANDBY_FIELD) + STANDBY_DRAWS


DEFAULT_SCHEMA_PATH = Path(__file__).resolve().parents[3] / "docs" / "racecard.schema.json"


class _Record(BaseModel):
    """Base of every contract record: strict JSON types, unknown fields ignored."""

    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False, frozen=True)


class RunnerOdds(_Record):
    """Prices of one runner before the off; all optional."""

    morning: Odds | None = Field(default=None, description="Morning (early) price.")
    final: Odds | None = Field(default=None, description="Price at the off.")
    final_capped: bool = Field(
        default=False,
        description=(
            "The final price is the pool's display cap (e.g. 99 in Hong Kong): the price "
            "was at least `final` (1.1). Needs `final`."
        ),
    )

    @model_validator(mode="after")
    def _capped_needs_final(self) -> RunnerOdds:
        if self.final_capped and self.final is None:
            raise PydanticCustomError(
                "invalid_value", "final_capped is true but there is no final price"
            )
        return self


class RunnerCard(_Record):
    """One declared runner of a race (non-runners included)."""

    horse_id: EntityId = Field(description="Stable horse id across races (entity key).")
    horse_name: str | None = Field(default=None, description="Display name.")
    cloth_number: int | None = Field(default=None, ge=1, le=999, description="Saddle-cloth number.")
    draw: int | None = Field(
        default=None,
        ge=1,
        le=99,
        description=(
            "Stall; at most the number of declared runners, or up to "
            f"max(declared, {STANDBY_FIELD}) + {STANDBY_DRAWS} for a standby starter (1.1, "
            "with a warning)."
        ),
    )
    age: int | None = Field(default=None, ge=1, le=99, description="Age in years.")
    sex: str | None = Field(default=None, description="e.g. gelding, mare, colt.")
    horse_country: str | None = Field(
        default=None, description="Country of breeding (addition to v1)."
    )
    weight_carried_kg: float | None = Field(
        default=None, gt=0, le=1000, description="Weight carried, kg."
    )
    body_weight_kg: float | None = Field(
        default=None, gt=0, le=5000, description="Declared body weight, kg."
    )
    rating: float | None = Field(default=None, description="Official rating.")
    gear: str | None = Field(default=None, description="Gear codes, e.g. B/TT.")
    jockey_id: EntityId | None = Field(default=None, description="Stable jockey id.")
    trainer_id: EntityId | None = Field(default=None, description="Stable trainer id.")
    odds: RunnerOdds | None = Field(default=None, description="Prices; optional.")
    non_runner: bool = Field(default=False, description="Declared but withdrawn.")
    comment: str | None = Field(default=None, description="Pre-race free text.")


class RaceHeader(_Record):
    """A race without its runners (what the parser validates per race)."""

    race_id: EntityId = Field(description="Unique across all files.")
    source_race_id: EntityId | None = Field(
        default=None, description="The feed's own id of the race, kept as given (1.1)."
    )
    off_time: OffTime = Field(
        description="ISO 8601 with a UTC offset: the event time (years 1900-2199)."
    )
    race_type: Literal[RACE_TYPES] | None = Field(default=None)  # type: ignore[valid-type]
    surface: Literal[SURFACES] | None = Field(default=None)  # type: ignore[valid-type]
    going: str | None = Field(default=None, description="Going description, e.g. good to firm.")
    distance_m: int = Field(ge=1, le=100_000, description="Race distance, metres.")
    race_class: int | None = Field(default=None, ge=0, le=99, description="Class, 1 is best.")
    race_grade: Literal[RACE_GRADES] | None = Field(  # type: ignore[valid-type]
        default=None,
        description=(
            "Group or listed race (1.1): G1, G2, G3 or listed; such races often have no race_class."
        ),
    )
    prize: float | None = Field(
        default=None, ge=0, description="Total prize money, local currency."
    )
    rail: str | None = Field(
        default=None, description="Rail position / track config (addition to v1)."
    )
    rating_band: str | None = Field(default=None, description="e.g. 40-15 (addition to v1).")


class RaceCard(RaceHeader):
    """A race with its declared runners."""

    runners: list[RunnerCard] = Field(description="Every declared runner, non-runners included.")


class MeetingHeader(_Record):
    """A meeting without its races."""

    date: dt.date = Field(description="Local calendar date of the meeting, YYYY-MM-DD.")
    course: str = Field(min_length=1, description="Course code or name.")
    country: str | None = Field(default=None, description="Country code, e.g. HK, GB.")


class Meeting(MeetingHeader):
    """A race meeting: one course on one day."""

    races: list[RaceCard]


class RacecardFile(_Record):
    """A ``*.racecard.json`` file: what is known before the off."""

    format: Literal[RACECARD_FORMATS]  # type: ignore[valid-type]
    meetings: list[Meeting]


class Finisher(_Record):
    """The result of one runner (finishers and non-finishers alike)."""

    horse_id: EntityId = Field(description="A runner of the race's racecard.")
    position: int | None = Field(
        default=None, ge=1, le=99, description="1-based; null for non-finishers; ties share it."
    )
    outcome: Literal[OUTCOMES] = Field(  # type: ignore[valid-type]
        description=(
            "finished or how the runner failed to; took_no_part (1.1): withdrawn after the "
            "racecard, like a non-runner (no label, no form)."
        )
    )
    lengths_behind: float | None = Field(
        default=None, ge=0, le=10_000, description="Lengths behind the winner."
    )
    finish_time_s: float | None = Field(
        default=None, gt=0, le=100_000, description="Finish time, seconds."
    )
    starting_price: Odds | None = Field(default=None, description="Starting price, decimal.")
    in_running_positions: list[Annotated[int, Field(ge=1, le=99)]] | None = Field(
        default=None, description="Positions at the sectional calls."
    )
    comment: str | None = Field(default=None, description="Race comment.")
    dead_heat: bool | None = Field(
        default=None,
        description="Dead heat (addition to v1); when omitted, a shared position means a dead heat.",
    )


class ResultHeader(_Record):
    """A result without its finishers."""

    race_id: EntityId = Field(description="A race of some racecard file.")
    status: Literal["official", "void"] = Field(description="void: abandoned, no result.")


class RaceResult(ResultHeader):
    """The result of one race."""

    finishers: list[Finisher] = Field(default_factory=list, description="Empty for a void race.")


class ResultsFile(_Record):
    """A ``*.results.json`` file: what is known after the race."""

    format: Literal[RESULTS_FORMATS]  # type: ignore[valid-type]
    results: list[RaceResult]


class RacecastFile(RootModel[Annotated[RacecardFile | ResultsFile, Field(discriminator="format")]]):
    """Any input file (v1 or 1.1), told apart by its ``format``."""


def contract_json_schema() -> dict:
    """Build the JSON Schema of the racecard and results files (v1 and 1.1).

    Returns:
        A JSON Schema (draft 2020-12) accepting a racecard file or a results file.
    """
    schema = RacecastFile.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "racecast racecard and results files, version 1.1 (accepts version 1)",
        "description": (
            "Generated by racecast.ingestion.contract.write_json_schema from the pydantic "
            "models; do not edit by hand. Rules that span records (unique race_id, results "
            "consistent with the racecard, draws within the field or the standby limit) are "
            "enforced by the parser, see docs/racecard_format.md and docs/data_model.md."
        ),
        **{k: v for k, v in schema.items() if k not in ("title", "description")},
    }


def write_json_schema(path: str | Path = DEFAULT_SCHEMA_PATH) -> Path:
    """Write the contract's JSON Schema to ``path`` (``docs/racecard.schema.json``).

    Args:
        path: Destination file.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(contract_json_schema(), indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return path


if __name__ == "__main__":
    write_json_schema()
