"""The simulated world's vocabulary and state types.

Constants of the model (going and surface scales, distances, classes, weights, effect
sizes not set by ``simulation.effects``, gear, result presentation, horse names), the
odds ladder (:data:`ODDS_LADDER`, :func:`round_to_ladder`), the state types the
dynamics (``racecast.simulation.dynamics``) work on (``_Course``, ``_RacePlan``, a race
day's arrays ``_Day``, the horse population ``_Horses``) and vectorised per-race helpers.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

GOINGS = ("firm", "good to firm", "good", "good to soft", "soft", "heavy")
SURFACES = ("turf", "dirt", "all-weather")

# Race distances (whole furlongs in metres: 5f, 6f, 7f, 1m, 1m1f, 1m2f, 1m4f, 1m6f, 2m).
_DISTANCES_M = np.array([1006, 1207, 1408, 1609, 1811, 2012, 2414, 2816, 3219])
_DISTANCE_WEIGHTS = np.array([0.12, 0.17, 0.14, 0.15, 0.09, 0.12, 0.10, 0.06, 0.05])
_DISTANCE_BAND_EDGES = np.array([1300, 1700, 2200])  # sprint | mile | middle | staying
_RATING_MEAN = 72.0
_CLASS_RATING_EDGES = np.array([60, 70, 80, 95])  # rating < 60: class 5 ... >= 95: class 1
_CLASS_PAR = np.array([np.nan, 100.0, 87.0, 75.0, 65.0, 55.0])  # index = class
_CLASS_PRIZE = np.array([0, 30000, 15000, 9000, 6000, 4000])
_LBS_PER_KG = 2.2046226
_TOP_WEIGHT_LBS, _MIN_WEIGHT_LBS = 136, 112  # 9st 10lb top weight, 8st bottom weight
_RATING_SCALE = 10.0  # rating points (lbs) per unit of eta

# Effects (units of eta; 1 unit ~ 10 rating points); the sizes of the others are
# parameters (``simulation.effects``, :class:`~racecast.simulation.config.EffectsConfig`).
_WEIGHT_PER_KG = 0.06
_INITIAL_RATING_SD = 2.0  # lbs: the initial population's ratings are settled readings
_MAX_RATING_STEP = 12.0  # lbs a rating can move after one run
_DEBUT_EFFECT = -0.25
# Gear bits: blinkers, visor, cheekpieces, hood (head gear, one at a time), tongue tie.
_GEAR_CODES = ("B", "V", "CP", "H", "TT")
_HEADGEAR_MASK = 0b01111
_GEAR_FIRST_TIME = np.array([0.25, 0.15, 0.12, 0.08, 0.06])
_GEAR_ONGOING = np.array([0.03, 0.03, 0.03, 0.02, 0.02])
_GEAR_ADD_P = np.array([0.40, 0.10, 0.25, 0.10, 0.15])
#: The additive parts of the linear predictor ``eta`` (``SimulatedWorld.components``).
ETA_COMPONENTS = (
    "talent age form distance going surface fitness readiness jockey trainer draw pace "
    "weight gear body_weight noise"
).split()
_GEAR_STRINGS = [
    "/".join(code for b, code in enumerate(_GEAR_CODES) if mask >> b & 1) or None
    for mask in range(1 << len(_GEAR_CODES))
]

# Result presentation.
_GOING_TIME = np.array([0.985, 0.992, 1.0, 1.015, 1.035, 1.065])
_SURFACE_TIME = np.array([1.0, 1.015, 1.01])
_NON_FINISH_OUTCOMES = ("pulled_up", "unseated", "fell")
_NON_FINISH_P = np.array([0.60, 0.25, 0.15])

_NAME_FIRST = (
    "Silver Golden Crimson Midnight Northern Royal Wild Distant Quiet Bold Lucky Desert "
    "Copper Scarlet Misty Stormy Hidden Rapid Noble Secret Velvet Winter Summer Autumn "
    "Ocean River Mountain Highland Iron Stone Amber Ivory Jade Ruby Sapphire Emerald "
    "Blue Black White Grey Red Green Shadow Thunder Star Moon Sun Sky Cloud Rain Snow "
    "Frost Fire Flame Spirit Dream Magic Brave Proud Gallant Swift Merry Gentle"
).split()
_NAME_SECOND = (
    "Arrow Harbour Legend Dancer Warrior Falcon Monarch Voyager Echo Empire Fortune "
    "Glory Horizon Journey Kingdom Lantern Meadow Melody Mirage Mystery Nomad Oasis "
    "Odyssey Phoenix Pilgrim Prince Princess Quest Raven Rebel Rhapsody Ridge Rocket "
    "Sceptre Sentinel Serenade Sovereign Sparrow Spear Storm Symphony Tempest Thistle "
    "Tiger Titan Trail Treasure Tribute Valley Venture Verse Victory Vision Voyage "
    "Wanderer Whisper Willow Wind Wonder Zephyr Comet Crown"
).split()


def _odds_ladder() -> np.ndarray:
    """Traditional fractional prices (1/20 ... 500/1) as decimal odds, ascending."""
    fractions = (
        "1/20 1/14 1/12 1/10 1/9 1/8 1/7 1/6 2/11 1/5 2/9 1/4 2/7 3/10 1/3 4/11 2/5 4/9 1/2 "
        "8/15 4/7 8/13 4/6 8/11 4/5 5/6 10/11 1/1 11/10 6/5 5/4 11/8 6/4 13/8 7/4 15/8 2/1 "
        "9/4 5/2 11/4 3/1 10/3 7/2 4/1 9/2 5/1 11/2 6/1 13/2 7/1 15/2 8/1 17/2 9/1 10/1 "
        "11/1 12/1 14/1 16/1 18/1 20/1 22/1 25/1 28/1 33/1 40/1 50/1 66/1 80/1 100/1 125/1 "
        "150/1 200/1 250/1 300/1 500/1"
    ).split()
    values = sorted({round(1 + int(a) / int(b), 2) for a, b in (f.split("/") for f in fractions)})
    return np.array(values)


ODDS_LADDER = _odds_ladder()
_LOG_LADDER_MID = np.log(ODDS_LADDER[:-1] * ODDS_LADDER[1:]) / 2


def round_to_ladder(odds: np.ndarray) -> np.ndarray:
    """Round decimal odds to the nearest price on :data:`ODDS_LADDER` (in log space).

    Args:
        odds: Decimal odds (any positive values; clipped to the ladder's range).

    Returns:
        Odds from the ladder, all > 1.0.
    """
    idx = np.searchsorted(_LOG_LADDER_MID, np.log(np.maximum(odds, 1e-9)))
    return ODDS_LADDER[idx]


@dataclass(frozen=True)
class _Course:
    course_id: str
    surface: int
    country: str
    tz: ZoneInfo
    draw_bias: np.ndarray  # by distance band, eta per unit of normalised draw
    pace_bias: float  # a front runner (style 0) gains pace_bias / 2, a hold-up horse loses it
    time_factor: float
    prize_factor: float
    distances: np.ndarray
    distance_p: np.ndarray
    seasonal: bool  # turf: races March to November only


@dataclass
class _RacePlan:
    meeting: int
    course: _Course
    race_no: int
    off_time: dt.datetime
    distance_m: int
    race_class: int
    going: int
    prize: int
    field_size: int


class _Day:
    """Arrays of one race day; declared runners are contiguous per race.

    Created by :meth:`create` with the runner keys (``hi`` horse index, ``ri`` race
    index) and per-race columns; the simulation steps add runner columns as attributes
    (``eta``, ``p_true``, ``odds_final``, ``position`` ...).
    """

    def __init__(self, day: int, plans: list[_RacePlan], hi: np.ndarray, sizes: np.ndarray) -> None:
        self.day = day
        self.date = dt.date.fromordinal(day)
        self.plans = plans
        self.hi = hi
        self.sizes = sizes
        self.n, self.n_races = len(hi), len(plans)
        self.ri = np.repeat(np.arange(self.n_races), sizes)
        self.starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.distance = np.array([p.distance_m for p in plans], dtype=float)
        self.going = np.array([p.going for p in plans])
        self.surface = np.array([p.course.surface for p in plans])
        self.race_class = np.array([p.race_class for p in plans])
        band = np.searchsorted(_DISTANCE_BAND_EDGES, self.distance)
        self.draw_bias = np.array([p.course.draw_bias[b] for p, b in zip(plans, band, strict=True)])
        self.pace_bias = np.array([p.course.pace_bias for p in plans])
        self.time_factor = np.array([p.course.time_factor for p in plans])

    @classmethod
    def create(cls, day: int, plans: list[_RacePlan], fields: list[np.ndarray]) -> _Day:
        sizes = np.array([len(f) for f in fields], dtype=np.int64)
        return cls(day, plans, np.concatenate(fields).astype(np.int64), sizes)

    def __getattr__(self, name: str) -> Any:  # a step ran out of order
        raise AttributeError(f"race-day column {name!r} is not computed yet")


def _age_curve(age_years: np.ndarray, peak: np.ndarray) -> np.ndarray:
    """Ability relative to the peak: steep improvement to ~4-5, slow decline after."""
    d = age_years - peak
    return np.where(d < 0, -0.28 * np.abs(d) ** 1.5, -0.10 * np.abs(d) ** 1.5)


def _class_of_rating(rating: np.ndarray) -> np.ndarray:
    return 5 - np.searchsorted(_CLASS_RATING_EDGES, rating, side="right")


def _group_rank(group: np.ndarray, score: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """0-based rank of ``score`` (descending) within contiguous groups.

    Args:
        group: Group index per element, non-decreasing (groups are contiguous).
        score: Scores; ``-inf`` ranks last. Ties keep the element order.
        starts: Index of each group's first element.

    Returns:
        The within-group rank of every element.
    """
    order = np.lexsort((-score, group))
    rank = np.empty(len(score), dtype=np.int64)
    rank[order] = np.arange(len(score)) - starts[group[order]]
    return rank


def _group_softmax(group: np.ndarray, x: np.ndarray, mask: np.ndarray, n_groups: int) -> np.ndarray:
    """Softmax of ``x`` within groups over the elements where ``mask`` is true (else 0)."""
    xm = np.where(mask, x, -np.inf)
    top = np.full(n_groups, -np.inf)
    np.maximum.at(top, group, xm)
    e = np.where(mask, np.exp(xm - top[group]), 0.0)
    total = np.bincount(group, weights=e, minlength=n_groups)
    return e / total[group]


class _Horses:
    """Column store of the horse population (grows as debutants arrive)."""

    COLUMNS = (
        "foal_day foal_year male gelded trainer ability peak form form_day opt_log "
        "going_pref surf0 surf1 surf2 style bw_base last_bw rating class_level runs "
        "last_run last_dist available_from retired gear gear_ever bad_runs new_trainer name"
    ).split()

    def __init__(self) -> None:
        self.n = 0
        for col in self.COLUMNS:
            setattr(self, col, np.empty(0))

    def append(self, cols: dict[str, np.ndarray]) -> None:
        missing = set(self.COLUMNS) - set(cols)
        if missing:
            raise KeyError(f"new horses lack columns {sorted(missing)}")
        for col in self.COLUMNS:
            old = getattr(self, col)
            new = np.asarray(cols[col])
            setattr(self, col, new.copy() if self.n == 0 else np.concatenate([old, new]))
        self.n += len(cols["ability"])

    def surface_effect(self, idx: np.ndarray, surface: np.ndarray) -> np.ndarray:
        table = np.stack([self.surf0[idx], self.surf1[idx], self.surf2[idx]], axis=1)
        return table[np.arange(len(idx)), surface]
