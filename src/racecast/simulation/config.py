"""Parameters of the synthetic race world (``conf/base/parameters/simulation.yml``).

Every parameter is validated up front; a bad value raises ``ValueError`` naming the
parameter as it is spelled in the YAML, e.g. ``simulation.n_days``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

#: Courses the world can race at: (course id, surface, country, IANA time zone).
COURSE_TEMPLATES: tuple[tuple[str, str, str, str], ...] = (
    ("AAA", "turf", "GB", "Europe/London"),
    ("BBB", "all-weather", "GB", "Europe/London"),
    ("CCC", "turf", "IE", "Europe/Dublin"),
    ("DDD", "dirt", "GB", "Europe/London"),
    ("EEE", "turf", "FR", "Europe/Paris"),
    ("FFF", "all-weather", "IE", "Europe/Dublin"),
)

_PREFIX = "simulation"


class MarketConfig(BaseModel):
    """Betting market: a noisy, biased and over-round view of the true probabilities."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    overround: float = Field(1.18, gt=1.0, le=2.0)
    overround_sd: float = Field(0.01, ge=0.0, le=0.2)
    morning_overround: float = Field(1.22, gt=1.0, le=2.0)
    noise_sd: float = Field(0.20, ge=0.0, le=3.0)
    morning_extra_noise_sd: float = Field(0.30, ge=0.0, le=3.0)
    longshot_alpha: float = Field(0.75, gt=0.0, le=1.5)


class EffectsConfig(BaseModel):
    """Sizes of the effects that make up a runner's strength ``eta`` (units of eta; one
    unit is 10 rating points) and how the handicapper and the connections see them.

    The defaults make the oracle's strength mostly a function of what can be known
    before the off: the official rating (a close, lagging reading of the horse's merit),
    the racecard, and the results of earlier races.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    ability_sd: float = Field(1.6, gt=0.0, le=5.0)
    form_sd: float = Field(0.12, ge=0.0, le=2.0)
    form_days: float = Field(240.0, gt=0.0, le=5000.0)
    readiness_sd: float = Field(0.09, ge=0.0, le=2.0)
    noise_sd: float = Field(0.06, ge=0.0, le=2.0)
    distance_coef: float = Field(1.2, ge=0.0, le=20.0)
    going_coef: float = Field(0.015, ge=0.0, le=1.0)
    surface_sd: float = Field(0.07, ge=0.0, le=2.0)
    jockey_sd: float = Field(0.12, ge=0.0, le=2.0)
    trainer_sd: float = Field(0.25, ge=0.0, le=2.0)
    pace_bias_sd: float = Field(0.10, ge=0.0, le=2.0)
    handicap_noise_sd: float = Field(0.2, ge=0.0, le=5.0)
    handicap_step: float = Field(0.4, gt=0.0, le=1.0)
    connections_sd: float = Field(0.5, ge=0.0, le=5.0)


class SimulationConfig(BaseModel):
    """Validated parameters of :func:`racecast.simulation.world.simulate`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = Field(20230401, ge=0)
    n_days: int = Field(300, ge=1, le=10_000)  # up to the 30x world of benchmarks/scale.py
    start_date: dt.date = dt.date(2023, 4, 1)
    mean_days_between_race_days: float = Field(2.4, ge=1.0, le=30.0)
    horses: int = Field(2200, ge=10, le=99_999)
    jockeys: int = Field(60, ge=2, le=999)
    trainers: int = Field(40, ge=1, le=999)
    courses: int = Field(4, ge=1, le=len(COURSE_TEMPLATES))
    meetings_per_day: tuple[int, int] = (1, 2)
    races_per_meeting: tuple[int, int] = (6, 9)
    runners_per_race: tuple[int, int] = (6, 14)
    non_runner_rate: float = Field(0.03, ge=0.0, le=0.3)
    void_rate: float = Field(0.005, ge=0.0, le=0.5)
    dead_heat_rate: float = Field(0.003, ge=0.0, le=0.5)
    non_finisher_rate: float = Field(0.006, ge=0.0, le=0.2)
    market: MarketConfig = Field(default_factory=MarketConfig)
    effects: EffectsConfig = Field(default_factory=EffectsConfig)
    show_progress: bool = True

    @model_validator(mode="after")
    def _check_consistency(self) -> SimulationConfig:
        for name in ("meetings_per_day", "races_per_meeting", "runners_per_race"):
            lo, hi = getattr(self, name)
            if lo < 1 or lo > hi:
                raise ValueError(
                    f"{_PREFIX}.{name}: expected [min, max] with 1 <= min <= max, got [{lo}, {hi}]"
                )
        if self.runners_per_race[0] < 2:
            raise ValueError(
                f"{_PREFIX}.runners_per_race: a race needs at least 2 declared runners, "
                f"got min {self.runners_per_race[0]}"
            )
        if self.runners_per_race[1] > 40:
            raise ValueError(
                f"{_PREFIX}.runners_per_race: at most 40 runners fit in the stalls, "
                f"got max {self.runners_per_race[1]}"
            )
        if self.meetings_per_day[1] > self.courses:
            raise ValueError(
                f"{_PREFIX}.meetings_per_day: max {self.meetings_per_day[1]} meetings a day "
                f"needs at least as many courses, got {_PREFIX}.courses={self.courses}"
            )
        riders_needed = self.meetings_per_day[1] * self.runners_per_race[1]
        if self.jockeys < riders_needed:
            raise ValueError(
                f"{_PREFIX}.jockeys: {self.jockeys} is too few; every meeting needs a full field "
                f"of distinct riders, so at least {riders_needed} (meetings x runners max)"
            )
        horses_needed = 3 * riders_needed * self.races_per_meeting[1]
        if self.horses < horses_needed:
            raise ValueError(
                f"{_PREFIX}.horses: {self.horses} is too few to fill the fields; need at least "
                f"{horses_needed} (3 x meetings x races x runners max)"
            )
        return self

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> SimulationConfig:
        """Validate the ``simulation`` parameters.

        Args:
            params: The mapping under the ``simulation:`` key (missing keys take defaults).

        Returns:
            The validated configuration.

        Raises:
            ValueError: If a parameter is unknown, missing a valid value or inconsistent;
                the message names it, e.g. ``simulation.n_days``.
        """
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            raise ValueError(
                f"{_PREFIX}: expected a mapping of parameters, got {type(params).__name__}"
            )
        try:
            return cls.model_validate(dict(params))
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                loc = ".".join(str(p) for p in err["loc"])
                msg = str(err["msg"]).removeprefix("Value error, ")
                if loc:
                    problems.append(f"{_PREFIX}.{loc}: {msg} (got {err.get('input')!r})")
                else:
                    problems.append(msg)
            raise ValueError("; ".join(problems)) from None
