"""The feature contract: feature views, entity keys, context, labels and model features.

The Feast repository (``feature_repo/``, written by hand) takes the schemas of its feature
views from ``VIEWS``; ``state.build_state_tables`` produces
exactly these columns and ``transform.build_features`` produces exactly
``FUNDAMENTAL_FEATURES + MARKET_FEATURES``. ``docs/features.md`` documents every family.

Naming: every stored feature carries its view's prefix (``h_`` horse, ``j_`` jockey,
``t_`` trainer, ``jt_`` jockey x trainer, ``hj_`` horse x jockey, ``trk_`` track), so
names are unique across views. Times are stored as float epoch seconds (``*_ts``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FLOAT = "float64"
INT = "int64"
STRING = "string"


@dataclass(frozen=True)
class ViewSpec:
    """One Feast feature view: the state of an entity after each of its races.

    Attributes:
        name: Feature view name.
        entities: Join keys, e.g. ``("horse_id",)`` or ``("jockey_id", "trainer_id")``.
        features: Feature column -> ``"float64"``, ``"int64"`` or ``"string"``.
    """

    name: str
    entities: tuple[str, ...]
    features: dict[str, str]


# --- categories of the wide "suitability" columns (the transform picks one) -------------
DISTANCE_BANDS: tuple[str, ...] = ("sprint", "mile", "middle", "staying")
DISTANCE_BAND_EDGES_M: tuple[int, ...] = (1200, 1600, 2000)  # upper edges, inclusive
GOING_GROUPS: tuple[str, ...] = ("firm", "good", "soft")
SURFACE_SLOTS: tuple[str, ...] = ("turf", "dirt", "allweather", "sand")
DRAW_RANGES: tuple[str, ...] = ("low", "mid", "high")
SUITABILITY: dict[str, tuple[str, ...]] = {
    "dist": DISTANCE_BANDS,
    "going": GOING_GROUPS,
    "surf": SURFACE_SLOTS,
    "draw": DRAW_RANGES,
}
DRAW_SLOTS = 16  # draw bias slots 1..16; slot 16 holds every draw >= 16
WINDOWS_DAYS: tuple[int, ...] = (30, 90, 365)


def suitability_columns(kind: str) -> tuple[list[str], list[str]]:
    """Return the wide horse-state columns of one suitability family.

    Args:
        kind: One of the keys of ``SUITABILITY`` (``dist``, ``going``, ``surf``, ``draw``).

    Returns:
        ``(runs_columns, wins_columns)`` in the order of the family's categories.
    """
    cats = SUITABILITY[kind]
    return [f"h_runs_{kind}_{c}" for c in cats], [f"h_wins_{kind}_{c}" for c in cats]


def draw_bias_columns() -> list[str]:
    """Return the track-profile draw-bias columns ``trk_draw_bias_1..DRAW_SLOTS``."""
    return [f"trk_draw_bias_{d}" for d in range(1, DRAW_SLOTS + 1)]


def _horse_features() -> dict[str, str]:
    feats: dict[str, str] = {
        "h_runs": INT,
        "h_wins": INT,
        "h_places": INT,
        "h_win_rate": FLOAT,
        "h_place_rate": FLOAT,
        "h_avg_rel_pos": FLOAT,
        "h_last_rel_pos": FLOAT,
        "h_ewm_rel_pos": FLOAT,
        "h_trend": FLOAT,
        "h_last_off_ts": FLOAT,
        "h_fig_runs": INT,
        "h_best_fig": FLOAT,
        "h_last_fig": FLOAT,
        "h_mean3_fig": FLOAT,
        "h_early_pos": FLOAT,
        "h_class_perf": FLOAT,
        "h_last_pr": FLOAT,
        "h_mean3_pr": FLOAT,
        "h_best5_pr": FLOAT,
    }
    for kind in SUITABILITY:
        runs, wins = suitability_columns(kind)
        feats.update({c: INT for c in runs})
        feats.update({c: INT for c in wins})
    feats.update(
        {
            "h_course_record": STRING,
            "h_last_distance": FLOAT,
            "h_last_class": FLOAT,
            "h_last_weight": FLOAT,
            "h_last_body_weight": FLOAT,
            "h_last_rating": FLOAT,
            "h_last_gear": STRING,
        }
    )
    return feats


def _connection_features(prefix: str) -> dict[str, str]:
    feats: dict[str, str] = {
        f"{prefix}_runs": INT,
        f"{prefix}_wins": INT,
        f"{prefix}_win_rate": FLOAT,
        f"{prefix}_recent_rel_pos": FLOAT,
    }
    for days in WINDOWS_DAYS:
        feats[f"{prefix}_runs_{days}d"] = INT
        feats[f"{prefix}_wins_{days}d"] = INT
        feats[f"{prefix}_rate_{days}d"] = FLOAT
    return feats


VIEWS: dict[str, ViewSpec] = {
    "horse_form": ViewSpec("horse_form", ("horse_id",), _horse_features()),
    "jockey_form": ViewSpec("jockey_form", ("jockey_id",), _connection_features("j")),
    "trainer_form": ViewSpec("trainer_form", ("trainer_id",), _connection_features("t")),
    "jockey_trainer_form": ViewSpec(
        "jockey_trainer_form",
        ("jockey_id", "trainer_id"),
        {"jt_runs": INT, "jt_wins": INT, "jt_win_rate": FLOAT},
    ),
    "horse_jockey_form": ViewSpec(
        "horse_jockey_form",
        ("horse_id", "jockey_id"),
        {"hj_runs": INT, "hj_wins": INT, "hj_win_rate": FLOAT, "hj_avg_rel_pos": FLOAT},
    ),
    "track_profile": ViewSpec(
        "track_profile",
        ("track_key",),
        {"trk_races": INT, **{c: FLOAT for c in draw_bias_columns()}},
    ),
}

ENTITY_KEYS: tuple[str, ...] = ("horse_id", "jockey_id", "trainer_id", "track_key")

# Feast feature-view TTL. Ten years is "no TTL" in practice: a finite TTL would turn a
# horse back from a long lay-off into a fake debutant (and a jockey back from injury
# into an unknown), and ``days_since_last_run`` already says how old the state is.
# ``transform.point_in_time_join(..., ttl_days=STATE_TTL_DAYS)`` mirrors it exactly.
STATE_TTL_DAYS = 3650

CONTEXT_COLUMNS: list[str] = [
    "race_id",
    "horse_id",
    "jockey_id",
    "trainer_id",
    "track_key",
    "off_time",
    "course",
    "surface",
    "going",
    "distance_m",
    "race_class",
    "draw",
    "age",
    "sex",
    "weight_carried_kg",
    "body_weight_kg",
    "rating",
    "gear",
    "odds_final",
    "n_runners",
]

LABEL_COLUMNS: list[str] = ["won", "position", "field_size"]

#: Race-card order (saddle-cloth number). Not a feature: it orders runners, e.g. so that
#: joint favourites go to the lowest cloth number as in the protocol's reference figures.
CARD_ORDER = "cloth_number"

#: ``odds_final`` is the source's display cap, so the price was at least that (Hong Kong
#: shows 99). Carried in the entity rows as request data, not a feature: for a market
#: model that corrects capped prices.
ODDS_CAPPED = "odds_capped"

DEBUT_FLAG = "is_debut"

# Columns compared within the race by ``transform.race_relative`` (-> <col>_rel, <col>_rank).
RELATIVE_COLUMNS: list[str] = [
    "rating",
    "weight_carried_kg",
    "h_win_rate",
    "h_ewm_rel_pos",
    "h_best_fig",
    "h_last_fig",
    "h_mean3_fig",
    "j_rate_365d",
    "t_rate_365d",
    "draw_bias",
    "h_last_pr",
    "h_mean3_pr",
    "h_best5_pr",
    "j_recent_rel_pos",
]

_BASE_FUNDAMENTAL: list[str] = [
    # racecard context
    "draw",
    "draw_frac",
    "age",
    "sex_female",
    "sex_entire",
    "weight_carried_kg",
    "body_weight_kg",
    "rating",
    "n_runners",
    "distance_m",
    "race_class",
    "going_code",
    DEBUT_FLAG,
    # horse form
    "h_runs",
    "h_wins",
    "h_places",
    "h_win_rate",
    "h_place_rate",
    "h_avg_rel_pos",
    "h_last_rel_pos",
    "h_ewm_rel_pos",
    "h_trend",
    "days_since_last_run",
    # speed and pace
    "h_best_fig",
    "h_last_fig",
    "h_mean3_fig",
    "h_early_pos",
    "h_class_perf",
    # performance ratings (rating units) and how the horse is handicapped today
    "h_last_pr",
    "h_mean3_pr",
    "h_best5_pr",
    "pr_vs_rating",
    "pr_weight_adv",
    # suitability for this race
    "dist_runs",
    "dist_win_rate",
    "going_runs",
    "going_win_rate",
    "surface_runs",
    "surface_win_rate",
    "course_runs",
    "course_win_rate",
    "draw_range_runs",
    "draw_range_win_rate",
    # changes since the last run
    "distance_change",
    "class_change",
    "weight_change",
    "body_weight_change",
    "rating_change",
    "first_time_gear",
    "gear_changed",
    # connections
    "j_win_rate",
    "j_rate_30d",
    "j_rate_90d",
    "j_rate_365d",
    "j_runs_365d",
    "t_win_rate",
    "t_rate_30d",
    "t_rate_90d",
    "t_rate_365d",
    "t_runs_365d",
    "j_recent_rel_pos",
    "t_recent_rel_pos",
    "jt_runs",
    "jt_win_rate",
    "hj_runs",
    "hj_win_rate",
    # track
    "draw_bias",
    "trk_races",
]

FUNDAMENTAL_FEATURES: list[str] = _BASE_FUNDAMENTAL + [
    f"{c}_{suffix}" for c in RELATIVE_COLUMNS for suffix in ("rel", "rank")
]

MARKET_FEATURES: list[str] = ["mkt_log_prob", "mkt_odds_rank", "mkt_norm_odds"]

KEY_COLUMNS: list[str] = ["race_id", "horse_id", "jockey_id", "trainer_id", "off_time"]

DEFAULT_PARAMS: dict[str, Any] = {
    # Feast event_timestamp = off_time + this delay: a race never sees its own result.
    "post_race_delay_s": 1,
    # shrinkage (wins + k * prior) / (runs + k)
    "horse_k": 5.0,
    "connection_k": 20.0,
    "pair_k": 10.0,
    "win_prior": 0.08,
    "place_prior": 0.25,
    # horse form
    "ewm_halflife_runs": 3.0,
    "trend_runs": 3,
    # speed figures
    "std_min_races": 5,
    "sec_per_length": 0.2,
    "max_lengths": 30.0,
    "figure_scale": 1000.0,
    "figure_clip": 200.0,
    # class-adjusted performance
    "class_ref": 3.0,
    "class_step": 0.1,
    "class_max": 6.0,
    # draw bias shrinkage (in expected-win units)
    "draw_bias_k": 5.0,
    # performance rating: rating units per length at 1600 m (scaled by 1600 / distance,
    # clipped to [pr_unit_min, pr_unit_max]) and per kg carried above the field's mean
    "pr_units_per_length_1600m": 2.4,
    "pr_unit_min": 1.0,
    "pr_unit_max": 4.0,
    "pr_units_per_kg": 2.2046,
    "pr_best_runs": 5,
    # trailing mean rel_pos of a jockey's / trainer's latest rides (NaN below min_rides)
    "jockey_recent_rides": 100,
    "trainer_recent_rides": 200,
    "recent_min_rides": 10,
}


def resolve_params(params: dict[str, Any] | None) -> dict[str, Any]:
    """Merge user parameters over ``DEFAULT_PARAMS``.

    Args:
        params: Overrides (may be ``None``); keys must be known parameters.

    Returns:
        A new dict with every parameter set.

    Raises:
        ValueError: If a key is not a known feature parameter.
    """
    params = dict(params or {})
    unknown = sorted(set(params) - set(DEFAULT_PARAMS))
    if unknown:
        raise ValueError(f"unknown feature parameter(s) {unknown}; known: {sorted(DEFAULT_PARAMS)}")
    return {**DEFAULT_PARAMS, **params}


def all_state_features() -> list[str]:
    """Return every stored feature column of every view, in view order."""
    return [f for spec in VIEWS.values() for f in spec.features]
