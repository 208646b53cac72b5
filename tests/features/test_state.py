"""State tables: every family on small hand-built races with known answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from racecast.features.columns import draw_range, going_group, track_key
from racecast.features.entities import entity_frame
from racecast.features.specs import DEFAULT_PARAMS, VIEWS, draw_bias_columns
from racecast.features.state import _finalise, build_state_tables
from racecast.features.transform import build_features, point_in_time_join

K = DEFAULT_PARAMS["horse_k"]
CK = DEFAULT_PARAMS["connection_k"]
PRIOR = DEFAULT_PARAMS["win_prior"]
PLACE_PRIOR = DEFAULT_PARAMS["place_prior"]


def _fillers(race_id: str, n: int, start_pos: int, skip: set[int] | None = None) -> list[dict]:
    """Runners F<race>_<i> taking the positions not given to the horses under test."""
    positions = [p for p in range(1, n + 1) if p not in (skip or set())][: n - len(skip or set())]
    return [
        {
            "race_id": race_id,
            "horse_id": f"F{race_id}_{i}",
            "post_position": p,
            "jockey_id": f"JF{i}",
            "trainer_id": f"TF{i}",
        }
        for i, p in enumerate(positions, start=start_pos)
    ]


def _state_row(table: pd.DataFrame, **keys: str) -> pd.DataFrame:
    mask = np.ones(len(table), dtype=bool)
    for k, v in keys.items():
        mask &= (table[k] == v).to_numpy(bool)
    return table.loc[mask]


# --- helpers --------------------------------------------------------------------------


def test_track_key_is_vectorised_and_null_when_a_part_is_missing():
    course = pd.Series(["ST", "HV", None], dtype="string")
    surface = pd.Series(["Turf", "dirt", "turf"], dtype="string")
    distance = pd.Series([1200, 1650.0, 1000], dtype="float64")
    out = track_key(course, surface, distance)
    assert out.tolist()[:2] == ["ST|turf|1200", "HV|dirt|1650"]
    assert pd.isna(out.iloc[2])


@pytest.mark.parametrize(
    ("going", "group"),
    [
        ("GOOD TO FIRM", "firm"),
        ("good", "good"),
        ("Good To Yielding", "soft"),
        ("YIELDING TO SOFT", "soft"),
        ("WET SLOW", "soft"),
        ("FAST", "firm"),
        ("wet fast", "good"),
        ("very soft indeed", "soft"),
        ("standard", "good"),
    ],
)
def test_going_group_maps_hk_and_unlisted_goings(going, group):
    assert going_group(pd.Series([going])).iloc[0] == group


def test_going_group_unknown_is_null():
    out = going_group(pd.Series(["mystery", None], dtype="string"))
    assert out.isna().all()


def test_draw_range_thirds_of_the_field():
    draw = pd.Series([1, 4, 5, 8, 9, 12, 14, None], dtype="Int64")
    field = pd.Series([12] * 8)
    assert draw_range(draw, field).tolist()[:7] == [
        "low",
        "low",
        "mid",
        "mid",
        "high",
        "high",
        "high",
    ]
    assert pd.isna(draw_range(draw, field).iloc[7])


# --- entity frame ---------------------------------------------------------------------


def test_entity_frame_filters_and_labels(tables):
    races, runners = tables(
        [
            {"race_id": "R1", "day": 0},
            {"race_id": "R2", "day": 1, "status": "void"},
            {"race_id": "R3", "day": 2, "status": "pending"},
        ],
        [
            {"race_id": "R1", "horse_id": "A", "post_position": 1},
            {"race_id": "R1", "horse_id": "B", "post_position": 1},  # dead heat
            {"race_id": "R1", "horse_id": "C", "post_position": 3},
            {
                "race_id": "R1",
                "horse_id": "D",
                "post_position": None,
                "post_won": False,
            },  # pulled up
            {"race_id": "R1", "horse_id": "E", "non_runner": True},
            {"race_id": "R2", "horse_id": "A"},
            {"race_id": "R3", "horse_id": "A"},
            {"race_id": "R3", "horse_id": "C"},
        ],
    )
    ctx = entity_frame(races, runners)
    assert ctx["race_id"].tolist() == ["R1"] * 4 + ["R3"] * 2
    r1 = ctx[ctx["race_id"] == "R1"].set_index("horse_id")
    assert r1["won"].tolist() == [1, 1, 0, 0]
    assert r1["field_size"].tolist() == [4] * 4
    assert r1["n_runners"].tolist() == [4] * 4
    assert pd.isna(r1.loc["D", "position"])
    r3 = ctx[ctx["race_id"] == "R3"]
    assert r3[["won", "position", "field_size"]].isna().all().all()
    assert (r3["n_runners"] == 2).all()
    assert (ctx["event_timestamp"] == ctx["off_time"]).all()
    assert ctx.loc[0, "track_key"] == "ST|turf|1200"


def test_entity_frame_does_not_mutate_inputs(tables):
    races, runners = tables(
        [{"race_id": "R1", "day": 0}], [{"race_id": "R1", "horse_id": "A", "post_position": 1}]
    )
    before_races, before_runners = races.copy(), runners.copy()
    entity_frame(races, runners)
    build_state_tables(races, runners)
    pd.testing.assert_frame_equal(races, before_races)
    pd.testing.assert_frame_equal(runners, before_runners)


def test_missing_column_error_names_it(tables):
    races, runners = tables(
        [{"race_id": "R1", "day": 0}], [{"race_id": "R1", "horse_id": "A", "post_position": 1}]
    )
    with pytest.raises(KeyError, match="runners.*'draw'"):
        entity_frame(races, runners.drop(columns="draw"))
    with pytest.raises(KeyError, match="races.*'going'"):
        build_state_tables(races.drop(columns="going"), runners)


def test_unknown_parameter_and_zero_delay_are_rejected(tables):
    races, runners = tables(
        [{"race_id": "R1", "day": 0}], [{"race_id": "R1", "horse_id": "A", "post_position": 1}]
    )
    with pytest.raises(ValueError, match="horse_kk"):
        build_state_tables(races, runners, {"horse_kk": 3})
    with pytest.raises(ValueError, match="post_race_delay_s"):
        build_state_tables(races, runners, {"post_race_delay_s": 0})


# --- horse form -----------------------------------------------------------------------


@pytest.fixture
def horse_history(tables):
    """Horse A: positions 1, 4, 2 in fields 8, 10, 6; then a void run, a non-run, a pending race."""
    races = [
        {
            "race_id": "R1",
            "day": 0,
            "distance_m": 1200,
            "going": "good",
            "course": "ST",
            "race_class": 4,
        },
        {
            "race_id": "R2",
            "day": 7,
            "distance_m": 1600,
            "going": "good",
            "course": "HV",
            "race_class": 3,
        },
        {
            "race_id": "R3",
            "day": 14,
            "distance_m": 1200,
            "going": "yielding",
            "course": "ST",
            "race_class": 5,
        },
        {"race_id": "RV", "day": 20, "status": "void"},
        {"race_id": "RN", "day": 22},
        {
            "race_id": "R4",
            "day": 30,
            "status": "pending",
            "distance_m": 1200,
            "going": "good to firm",
            "course": "HV",
        },
    ]
    runners = (
        [
            {
                "race_id": "R1",
                "horse_id": "A",
                "post_position": 1,
                "draw": 1,
                "gear": "--",
                "rating": 50.0,
                "post_in_running_positions": "[3, 2, 1]",
            }
        ]
        + _fillers("R1", 8, 2, {1})
        + [
            {
                "race_id": "R2",
                "horse_id": "A",
                "post_position": 4,
                "draw": 10,
                "gear": "--",
                "rating": 55.0,
                "post_in_running_positions": "[1, 1, 4]",
            }
        ]
        + _fillers("R2", 10, 2, {4})
        + [
            {
                "race_id": "R3",
                "horse_id": "A",
                "post_position": 2,
                "draw": 3,
                "gear": "B",
                "rating": 58.0,
                "weight_carried_kg": 57.0,
                "body_weight_kg": 470.0,
            }
        ]
        + _fillers("R3", 6, 2, {2})
        + [{"race_id": "RV", "horse_id": "A"}, {"race_id": "RV", "horse_id": "Z"}]
        + [
            {"race_id": "RN", "horse_id": "A", "non_runner": True, "post_position": None},
            {"race_id": "RN", "horse_id": "Z", "post_position": 1},
        ]
        + [{"race_id": "R4", "horse_id": "A"}, {"race_id": "R4", "horse_id": "NEW"}]
    )
    return tables(races, runners)


def test_horse_state_rows_only_for_official_runs(horse_history):
    races, runners = horse_history
    horse = build_state_tables(races, runners)["horse_form"]
    rows = _state_row(horse, horse_id="A")
    assert rows["h_runs"].tolist() == [1, 2, 3]
    expected_ts = races.set_index("race_id").loc[["R1", "R2", "R3"], "off_time"] + pd.Timedelta(
        seconds=1
    )
    assert rows["event_timestamp"].tolist() == expected_ts.tolist()
    assert str(horse["event_timestamp"].dtype) == "datetime64[ns, UTC]"
    assert _state_row(horse, horse_id="NEW").empty


def test_horse_form_at_fourth_race(horse_history, features):
    races, runners = horse_history
    feats = features(races, runners, {"trend_runs": 2}).set_index(["race_id", "horse_id"])
    a = feats.loc[("R4", "A")]
    rel = np.array([0.0, 3 / 9, 1 / 5])
    assert a["h_runs"] == 3 and a["h_wins"] == 1 and a["h_places"] == 2
    assert a["h_win_rate"] == pytest.approx((1 + K * PRIOR) / (3 + K))
    assert a["h_place_rate"] == pytest.approx((2 + K * PLACE_PRIOR) / (3 + K))
    assert a["h_avg_rel_pos"] == pytest.approx(rel.mean())
    assert a["h_last_rel_pos"] == pytest.approx(0.2)
    weights = 0.5 ** (np.array([2, 1, 0]) / DEFAULT_PARAMS["ewm_halflife_runs"])
    assert a["h_ewm_rel_pos"] == pytest.approx((weights * rel).sum() / weights.sum())
    assert a["h_trend"] == pytest.approx(rel[1:].mean() - rel.mean())
    assert a["days_since_last_run"] == pytest.approx(16.0)
    # run style: first call (pos-1)/(field-1) over runs with in-running data
    assert a["h_early_pos"] == pytest.approx(np.mean([2 / 7, 0 / 9]))
    assert a["is_debut"] == 0
    # changes since the last run (R3)
    assert a["distance_change"] == 0.0
    assert a["class_change"] == pytest.approx(4 - 5)
    assert a["weight_change"] == pytest.approx(55.0 - 57.0)
    assert a["body_weight_change"] == pytest.approx(480.0 - 470.0)
    assert a["rating_change"] == pytest.approx(60.0 - 58.0)


def test_class_adjusted_performance(horse_history):
    races, runners = horse_history
    row = _state_row(build_state_tables(races, runners)["horse_form"], horse_id="A").iloc[-1]
    rel = np.array([0.0, 3 / 9, 1 / 5])
    classes = np.array([4, 3, 5])
    perf = (1 - rel) + DEFAULT_PARAMS["class_step"] * (DEFAULT_PARAMS["class_ref"] - classes)
    assert row["h_class_perf"] == pytest.approx(perf.mean())


def test_suitability_picks_this_race(horse_history, features):
    races, runners = horse_history
    horse = build_state_tables(races, runners)["horse_form"]
    last = _state_row(horse, horse_id="A").iloc[-1]
    assert last["h_runs_dist_sprint"] == 2 and last["h_wins_dist_sprint"] == 1
    assert last["h_runs_dist_mile"] == 1
    assert last["h_runs_going_good"] == 2 and last["h_runs_going_soft"] == 1
    assert last["h_runs_surf_turf"] == 3
    assert last["h_course_record"] == "HV=1/0;ST=2/1"
    # draws 1/8 low, 10/10 high, 3/6 mid
    assert (last["h_runs_draw_low"], last["h_runs_draw_mid"], last["h_runs_draw_high"]) == (1, 1, 1)

    a = features(races, runners).set_index(["race_id", "horse_id"]).loc[("R4", "A")]
    assert a["dist_runs"] == 2
    assert a["dist_win_rate"] == pytest.approx((1 + K * PRIOR) / (2 + K))
    assert a["going_runs"] == 0  # good to firm: never run on firm ground
    assert a["going_win_rate"] == pytest.approx(PRIOR)
    assert a["course_runs"] == 1  # R4 is at HV
    assert a["course_win_rate"] == pytest.approx((0 + K * PRIOR) / (1 + K))
    assert a["surface_runs"] == 3
    assert a["draw_range_runs"] == 1  # draw 1 of 2 runners: ceil(3 * 1 / 2) = 2 -> mid


def test_first_time_gear_and_debutant(horse_history, features):
    races, runners = horse_history
    feats = features(races, runners).set_index(["race_id", "horse_id"])
    # R3: gear B, last run (R2) none -> first time
    assert feats.loc[("R3", "A"), "first_time_gear"] == 1.0
    assert feats.loc[("R3", "A"), "gear_changed"] == 1.0
    # R2: no gear now, none last time
    assert feats.loc[("R2", "A"), "first_time_gear"] == 0.0
    assert feats.loc[("R2", "A"), "gear_changed"] == 0.0
    # R4: no gear now, blinkers last time: a change, not first-time gear
    assert feats.loc[("R4", "A"), "first_time_gear"] == 0.0
    assert feats.loc[("R4", "A"), "gear_changed"] == 1.0
    new = feats.loc[("R4", "NEW")]
    assert new["is_debut"] == 1
    horse_cols = [c for c in new.index if c.startswith("h_") and not c.endswith(("_rel", "_rank"))]
    extra = [
        "days_since_last_run",
        "dist_runs",
        "course_runs",
        "going_win_rate",
        "first_time_gear",
        "distance_change",
    ]
    assert new[horse_cols + extra].isna().all()
    # R1 (first run of A) is also a debut
    assert feats.loc[("R1", "A"), "is_debut"] == 1


# --- speed figures ----------------------------------------------------------------------


@pytest.fixture
def timed_races(tables):
    """Five races on ST|turf|1200: three on good ground, then two on soft."""
    spec = [
        ("R1", 0, "good", 70.0),
        ("R2", 1, "good", 72.0),
        ("R3", 2, "good", 71.0),
        ("R4", 3, "soft", 75.0),
        ("R5", 4, "soft", 76.0),
    ]
    races = [{"race_id": r, "day": d, "going": g} for r, d, g, _ in spec]
    runners = []
    for r, _, _, t in spec:
        runners.append(
            {"race_id": r, "horse_id": f"W{r}", "post_position": 1, "post_finish_time_s": t}
        )
        runners.append(
            {"race_id": r, "horse_id": f"S{r}", "post_position": 2, "post_finish_time_s": t + 1.0}
        )
        runners.append(
            {"race_id": r, "horse_id": f"L{r}", "post_position": 3, "post_lengths_behind": 5.0}
        )
        runners.append(
            {"race_id": r, "horse_id": f"P{r}", "post_position": None, "post_won": False}
        )
    return tables(races, runners)


def _figure(table: pd.DataFrame, horse: str) -> float:
    row = _state_row(table, horse_id=horse)
    return float(row["h_last_fig"].iloc[0])


def test_standard_time_uses_only_earlier_winners(timed_races):
    races, runners = timed_races
    horse = build_state_tables(races, runners, {"std_min_races": 1})["horse_form"]
    scale = DEFAULT_PARAMS["figure_scale"]
    assert math.isnan(_figure(horse, "WR1"))  # no earlier race: no standard
    assert _state_row(horse, horse_id="WR1")["h_fig_runs"].iloc[0] == 0
    assert _figure(horse, "WR2") == pytest.approx(scale * (70 - 72) / 70)
    assert _figure(horse, "SR2") == pytest.approx(scale * (70 - 73) / 70)
    # missing finish time: winner's time + 5 lengths * 0.2 s
    assert _figure(horse, "LR2") == pytest.approx(scale * (70 - 73) / 70)
    assert _figure(horse, "WR3") == pytest.approx(0.0)  # standard = mean(70, 72)
    assert math.isnan(_figure(horse, "PR3"))  # did not finish
    # first soft race: no soft standard yet -> track standard over all goings (71) x allowance 1
    assert _figure(horse, "WR4") == pytest.approx(scale * (71 - 75) / 71)
    # second soft race: the (track, soft) cell has one earlier winner
    assert _figure(horse, "WR5") == pytest.approx(scale * (75 - 76) / 75)


def test_standard_time_needs_min_races_before_using_the_cell(timed_races):
    races, runners = timed_races
    horse = build_state_tables(races, runners, {"std_min_races": 2})["horse_form"]
    scale = DEFAULT_PARAMS["figure_scale"]
    # R2 has one earlier good race (< 2): fallback = track mean 70 x allowance 1 -> same number
    assert _figure(horse, "WR2") == pytest.approx(scale * (70 - 72) / 70)
    # R5: soft cell has 1 race (< 2) -> track mean of R1-R4 (72) x soft allowance (75/71)
    std = (70 + 72 + 71 + 75) / 4 * (75 / 71)
    assert _figure(horse, "WR5") == pytest.approx(scale * (std - 76) / std)


def test_same_off_time_races_do_not_see_each_other(tables):
    races, runners = tables(
        [{"race_id": "R1", "day": 0}, {"race_id": "R2", "day": 1}, {"race_id": "R3", "day": 1}],
        [
            {"race_id": "R1", "horse_id": "A", "post_position": 1, "post_finish_time_s": 70.0},
            {"race_id": "R2", "horse_id": "B", "post_position": 1, "post_finish_time_s": 72.0},
            {"race_id": "R3", "horse_id": "C", "post_position": 1, "post_finish_time_s": 74.0},
        ],
    )
    horse = build_state_tables(races, runners, {"std_min_races": 1})["horse_form"]
    scale = DEFAULT_PARAMS["figure_scale"]
    assert _figure(horse, "B") == pytest.approx(scale * (70 - 72) / 70)
    assert _figure(horse, "C") == pytest.approx(scale * (70 - 74) / 70)


def test_best_last_and_mean3_figures(tables):
    days = [0, 1, 2, 3, 4, 5]
    times = [70.0, 70.0, 71.0, None, 69.0, 72.0]  # horse H runs R2..R6; R4 time unknown
    races = [{"race_id": f"R{i + 1}", "day": d} for i, d in enumerate(days)]
    runners = [{"race_id": "R1", "horse_id": "X", "post_position": 1, "post_finish_time_s": 70.0}]
    for i in range(1, 6):
        runners.append(
            {
                "race_id": f"R{i + 1}",
                "horse_id": "H",
                "post_position": 2,
                "post_finish_time_s": times[i],
                "post_lengths_behind": None,
            }
        )
        runners.append(
            {
                "race_id": f"R{i + 1}",
                "horse_id": f"Y{i}",
                "post_position": 1,
                "post_finish_time_s": 70.0,
            }
        )
    races, runners = tables(races, runners)
    horse = _state_row(
        build_state_tables(races, runners, {"std_min_races": 1})["horse_form"], horse_id="H"
    )
    figs = [1000 * (70 - t) / 70 for t in (70.0, 71.0, 69.0, 72.0)]
    last = horse.iloc[-1]
    assert last["h_fig_runs"] == 4
    assert last["h_best_fig"] == pytest.approx(max(figs))
    assert last["h_last_fig"] == pytest.approx(figs[-1])
    assert last["h_mean3_fig"] == pytest.approx(np.mean(figs[-3:]))
    # the run without a time keeps the previous figures
    assert horse.iloc[2]["h_last_fig"] == pytest.approx(figs[1])


def _pr_race(
    race_id: str,
    positions: list[int | None],
    lengths: list[float | None],
    ratings: list[float],
    weights: list[float],
) -> list[dict]:
    """Runners H (first) and fillers with positions, lengths behind, ratings and weights."""
    rows = []
    columns = zip(positions, lengths, ratings, weights, strict=True)
    for i, (pos, lb, rating, weight) in enumerate(columns):
        rows.append(
            {
                "race_id": race_id,
                "horse_id": "H" if i == 0 else f"F{race_id}_{i}",
                "jockey_id": f"J{i}",
                "post_position": pos,
                "post_lengths_behind": lb,
                "rating": rating,
                "weight_carried_kg": weight,
            }
        )
    return rows


def test_performance_ratings_by_hand(tables):
    p = DEFAULT_PARAMS
    unit_1200 = min(max(p["pr_units_per_length_1600m"] * 1600 / 1200, p["pr_unit_min"]), 4.0)
    unit_2400 = max(p["pr_units_per_length_1600m"] * 1600 / 2400, p["pr_unit_min"])
    races = [
        {"race_id": "R1", "day": 0, "distance_m": 1200},
        {"race_id": "R2", "day": 7, "distance_m": 2400},
        {"race_id": "R3", "day": 14, "distance_m": 1200},
        {"race_id": "R4", "day": 21, "distance_m": 1200},
        {"race_id": "R5", "day": 28, "status": "pending"},
    ]
    # R1: H wins (0 lengths) at 60, field 60/70/50, weights 57/55/53
    # R2: H 2nd, 1.5 lengths; a non-finisher counts as max_lengths; HK's 999 too
    # R3: H 3rd, 4 lengths; R4: H is a non-finisher (max_lengths)
    runners = (
        _pr_race("R1", [1, 2, 3], [0.0, 1.0, 2.0], [60.0, 70.0, 50.0], [57.0, 55.0, 53.0])
        + _pr_race("R2", [None, 1, 2], [None, 0.0, 999.0], [60.0] * 3, [55.0] * 3)
        + _pr_race("R3", [3, 1, 2], [4.0, 0.0, 2.0], [62.0, 58.0, 60.0], [55.0, 56.0, 54.0])
        + _pr_race("R4", [None, 1], [None, 0.0], [61.0, 61.0], [55.0, 55.0])
        + [
            {"race_id": "R5", "horse_id": "H", "rating": 64.0, "weight_carried_kg": 58.0},
            {"race_id": "R5", "horse_id": "G", "rating": 60.0, "weight_carried_kg": 54.0},
        ]
    )
    races, runners = tables(races, runners)
    mx = p["max_lengths"]
    pr1 = 60.0 + (1.0 - 0.0) * unit_1200 + p["pr_units_per_kg"] * (57.0 - 55.0)
    # R2: H did not finish -> max_lengths; the winner 0; 999 -> max_lengths
    pr2 = 60.0 + ((mx + 0.0 + mx) / 3 - mx) * unit_2400
    pr3 = 60.0 + (2.0 - 4.0) * unit_1200 + p["pr_units_per_kg"] * (55.0 - 55.0)
    pr4 = 61.0 + ((mx + 0.0) / 2 - mx) * unit_1200
    horse = _state_row(build_state_tables(races, runners)["horse_form"], horse_id="H")
    assert horse["h_last_pr"].tolist() == pytest.approx([pr1, pr2, pr3, pr4])
    assert horse["h_mean3_pr"].tolist() == pytest.approx(
        [pr1, (pr1 + pr2) / 2, (pr1 + pr2 + pr3) / 3, (pr2 + pr3 + pr4) / 3]
    )
    assert horse["h_best5_pr"].tolist() == pytest.approx(
        np.maximum.accumulate([pr1, pr2, pr3, pr4]).tolist()
    )
    feats = compute_row(races, runners, "R5", "H")
    mean3 = (pr2 + pr3 + pr4) / 3
    assert feats["h_mean3_pr"] == pytest.approx(mean3)
    assert feats["pr_vs_rating"] == pytest.approx(mean3 - 64.0)
    assert feats["pr_weight_adv"] == pytest.approx(
        mean3 - 64.0 - p["pr_units_per_kg"] * (58.0 - 56.0)
    )


def test_performance_rating_needs_a_race_rating(tables):
    races, runners = tables(
        [{"race_id": "R1", "day": 0}],
        _pr_race("R1", [1, 2], [0.0, 1.0], [60.0, 60.0], [55.0, 55.0]),
    )
    runners["rating"] = np.nan
    horse = _state_row(build_state_tables(races, runners)["horse_form"], horse_id="H")
    assert horse["h_last_pr"].isna().all() and horse["h_best5_pr"].isna().all()


def compute_row(races: pd.DataFrame, runners: pd.DataFrame, race_id: str, horse_id: str):
    """Model features of one runner (state joined point-in-time)."""
    ctx = entity_frame(races, runners)
    feats = build_features(ctx, point_in_time_join(ctx, build_state_tables(races, runners)))
    return feats.set_index(["race_id", "horse_id"]).loc[(race_id, horse_id)]


# --- connections ------------------------------------------------------------------------


def test_jockey_windows_drop_old_rides(tables):
    days = {"R1": 0, "R2": 15, "R3": 20, "R4": 45, "R5": 50}
    wins = {"R1": True, "R2": False, "R3": True, "R4": False}
    races = [{"race_id": r, "day": d} for r, d in days.items()]
    runners = []
    for r in days:
        jx_pos = None if r == "R5" else (1 if wins[r] else 2)
        runners.append(
            {"race_id": r, "horse_id": f"H{r}", "jockey_id": "JX", "post_position": jx_pos}
        )
        runners.append(
            {
                "race_id": r,
                "horse_id": f"O{r}",
                "jockey_id": "JO",
                "post_position": None if r == "R5" else (2 if wins[r] else 1),
            }
        )
    races, runners = tables(races, runners)
    races.loc[races["race_id"] == "R5", "status"] = "pending"
    jockey = build_state_tables(races, runners)["jockey_form"]
    after_r4 = _state_row(jockey, jockey_id="JX").iloc[-1]
    # window (t - 30d, t] at day 45: day 15 is exactly 30 days old -> out; day 20 in
    assert after_r4["j_runs_30d"] == 2 and after_r4["j_wins_30d"] == 1
    assert after_r4["j_runs_90d"] == 4 and after_r4["j_wins_90d"] == 2
    assert after_r4["j_runs"] == 4 and after_r4["j_wins"] == 2
    assert after_r4["j_rate_30d"] == pytest.approx((1 + CK * PRIOR) / (2 + CK))
    ctx = entity_frame(races, runners)
    feats = build_features(ctx, point_in_time_join(ctx, build_state_tables(races, runners)))
    r5 = feats.set_index(["race_id", "jockey_id"]).loc[("R5", "JX")]
    assert r5["j_rate_30d"] == pytest.approx((1 + CK * PRIOR) / (2 + CK))
    assert r5["j_runs_365d"] == 4
    assert r5["j_win_rate"] == pytest.approx((2 + CK * PRIOR) / (4 + CK))


def test_recent_rel_pos_is_a_trailing_mean_of_the_latest_rides(tables):
    # jockey JX rides 5 races finishing 1st, 2nd, 3rd, 1st, 3rd of 3 (rel_pos 0, .5, 1, 0, 1)
    positions = [1, 2, 3, 1, 3]
    races = [{"race_id": f"R{i}", "day": i} for i in range(5)] + [
        {"race_id": "R5", "day": 5, "status": "pending"}
    ]
    runners = []
    for i, pos in enumerate(positions):
        others = [q for q in (1, 2, 3) if q != pos]
        runners.append(
            {"race_id": f"R{i}", "horse_id": f"H{i}", "jockey_id": "JX", "post_position": pos}
        )
        runners += [
            {"race_id": f"R{i}", "horse_id": f"O{i}_{q}", "jockey_id": f"JO{q}", "post_position": q}
            for q in others
        ]
    runners.append({"race_id": "R5", "horse_id": "H9", "jockey_id": "JX"})
    races, runners = tables(races, runners)
    rel = np.array([0.0, 0.5, 1.0, 0.0, 1.0])
    params = {"jockey_recent_rides": 3, "recent_min_rides": 2}
    jockey = _state_row(build_state_tables(races, runners, params)["jockey_form"], jockey_id="JX")
    expected = [np.nan] + [rel[max(0, k - 2) : k + 1].mean() for k in range(1, 5)]
    np.testing.assert_allclose(jockey["j_recent_rel_pos"].to_numpy(float), expected)
    ctx = entity_frame(races, runners)
    state = build_state_tables(races, runners, params)
    feats = build_features(ctx, point_in_time_join(ctx, state), params)
    r5 = feats.set_index(["race_id", "horse_id"]).loc[("R5", "H9")]
    assert r5["j_recent_rel_pos"] == pytest.approx(rel[2:].mean())


def test_trainer_with_two_runners_in_a_race_gets_one_row(tables):
    races, runners = tables(
        [{"race_id": "R1", "day": 0}, {"race_id": "R2", "day": 1}],
        [
            {
                "race_id": "R1",
                "horse_id": "A",
                "trainer_id": "T9",
                "jockey_id": "J1",
                "post_position": 1,
            },
            {
                "race_id": "R1",
                "horse_id": "B",
                "trainer_id": "T9",
                "jockey_id": "J2",
                "post_position": 2,
            },
            {
                "race_id": "R1",
                "horse_id": "C",
                "trainer_id": "T8",
                "jockey_id": "J3",
                "post_position": 3,
            },
            {
                "race_id": "R2",
                "horse_id": "A",
                "trainer_id": "T9",
                "jockey_id": "J2",
                "post_position": 2,
            },
            {
                "race_id": "R2",
                "horse_id": "B",
                "trainer_id": "T9",
                "jockey_id": "J1",
                "post_position": 1,
            },
        ],
    )
    tables_ = build_state_tables(races, runners)
    trainer = _state_row(tables_["trainer_form"], trainer_id="T9")
    assert trainer["t_runs"].tolist() == [2, 4]
    assert trainer["t_wins"].tolist() == [1, 2]
    assert trainer["t_runs_30d"].tolist() == [2, 4]
    jt = tables_["jockey_trainer_form"]
    assert _state_row(jt, jockey_id="J1", trainer_id="T9")["jt_runs"].tolist() == [1, 2]
    assert _state_row(jt, jockey_id="J1", trainer_id="T9")["jt_wins"].tolist() == [1, 2]
    hj = tables_["horse_jockey_form"]
    assert _state_row(hj, horse_id="A", jockey_id="J1")["hj_wins"].tolist() == [1]
    assert _state_row(hj, horse_id="A", jockey_id="J2")["hj_avg_rel_pos"].tolist() == [1.0]


def test_pair_without_history_has_zero_runs(tables, features):
    races, runners = tables(
        [{"race_id": "R1", "day": 0}, {"race_id": "R2", "day": 1, "status": "pending"}],
        [
            {"race_id": "R1", "horse_id": "A", "jockey_id": "J1", "post_position": 1},
            {"race_id": "R1", "horse_id": "B", "jockey_id": "J2", "post_position": 2},
            {"race_id": "R2", "horse_id": "A", "jockey_id": "J2"},
            {"race_id": "R2", "horse_id": "B", "jockey_id": "J2"},
        ],
    )
    feats = features(races, runners).set_index(["race_id", "horse_id"])
    assert feats.loc[("R2", "A"), "hj_runs"] == 0
    assert feats.loc[("R2", "A"), "hj_win_rate"] == pytest.approx(PRIOR)
    assert feats.loc[("R2", "B"), "hj_runs"] == 1


# --- track profile ----------------------------------------------------------------------


def test_draw_bias_learned_from_earlier_races_only(tables, features):
    races, runners = tables(
        [
            {"race_id": "R1", "day": 0},
            {"race_id": "R2", "day": 1},
            {"race_id": "R3", "day": 2, "distance_m": 1400},
        ],
        [
            *[
                {"race_id": "R1", "horse_id": f"A{d}", "draw": d, "post_position": p}
                for d, p in {1: 2, 2: 1, 3: 3, 4: 4}.items()
            ],
            *[
                {"race_id": "R2", "horse_id": f"B{d}", "draw": d, "post_position": p}
                for d, p in {1: 1, 2: 2, 18: 3}.items()
            ],
            {"race_id": "R3", "horse_id": "C1", "draw": 2, "post_position": 1},
        ],
    )
    k = DEFAULT_PARAMS["draw_bias_k"]
    track = build_state_tables(races, runners)["track_profile"]
    st = _state_row(track, track_key="ST|turf|1200")
    assert st["trk_races"].tolist() == [1, 2]
    first = st.iloc[0]
    assert first["trk_draw_bias_2"] == pytest.approx((1 + k) / (0.25 + k))
    assert first["trk_draw_bias_1"] == pytest.approx(k / (0.25 + k))
    assert first["trk_draw_bias_5"] == pytest.approx(1.0)
    second = st.iloc[1]
    assert second["trk_draw_bias_16"] == pytest.approx(k / (1 / 3 + k))  # draw 18 -> slot 16
    assert second["trk_draw_bias_1"] == pytest.approx((1 + k) / (0.25 + 1 / 3 + k))

    feats = features(races, runners).set_index(["race_id", "horse_id"])
    assert feats.loc[("R2", "B2"), "draw_bias"] == pytest.approx((1 + k) / (0.25 + k))
    assert feats.loc[("R2", "B18"), "draw_bias"] == pytest.approx(1.0)
    assert feats.loc[("R2", "B1"), "trk_races"] == 1
    assert np.isnan(feats.loc[("R1", "A1"), "draw_bias"])
    assert np.isnan(feats.loc[("R3", "C1"), "draw_bias"])  # other track_key: no history


# --- structure --------------------------------------------------------------------------


def test_tables_match_the_spec_and_are_unique(world):
    races, runners = world
    tables_ = build_state_tables(races, runners)
    assert list(tables_) == list(VIEWS)
    for name, spec in VIEWS.items():
        table = tables_[name]
        assert list(table.columns) == [*spec.entities, "event_timestamp", *spec.features]
        assert not table.duplicated([*spec.entities, "event_timestamp"]).any()
        for col, dtype in spec.features.items():
            assert str(table[col].dtype) == dtype, (name, col)
    assert len(draw_bias_columns()) == 16


def test_state_excludes_void_and_pending_races(world):
    races, runners = world
    tables_ = build_state_tables(races, runners)
    excluded = races.loc[races["status"] != "official", "off_time"] + pd.Timedelta(seconds=1)
    assert not tables_["horse_form"]["event_timestamp"].isin(excluded).any()
    official = runners.merge(races.loc[races["status"] == "official", ["race_id"]], on="race_id")
    active = official.loc[~official["non_runner"].astype(bool)]
    assert len(tables_["horse_form"]) == len(active)


def test_duplicate_state_rows_are_rejected():
    spec = VIEWS["jockey_trainer_form"]
    frame = pd.DataFrame(
        {
            "jockey_id": ["J1", "J1"],
            "trainer_id": ["T1", "T1"],
            "off_time": pd.to_datetime(["2024-01-01", "2024-01-01"], utc=True),
            "jt_runs": [1, 2],
            "jt_wins": [0, 1],
            "jt_win_rate": [0.1, 0.2],
        }
    )
    with pytest.raises(AssertionError, match="jockey_trainer_form.*duplicate"):
        _finalise(frame, spec, pd.Timedelta(seconds=1))


@pytest.mark.parametrize("seed", range(6))
def test_small_entity_frame_equals_the_batch_path(seed, monkeypatch):
    """A request-sized racecard takes the small path; it must give the batch frame exactly.

    Random slices of a world with non-runners, non-finishers, a dead heat, a void and a
    pending race, official results and missing cloth numbers.
    """
    from racecast.features import entities as entities_module
    from tests.features.conftest import make_world

    races, runners = make_world(seed=seed, n_races=40, n_days=8)
    rng = np.random.default_rng(seed)
    for _ in range(8):
        chosen = rng.choice(races["race_id"].to_numpy(), size=rng.integers(1, 7), replace=False)
        sub_races = races[races["race_id"].isin(chosen)].sample(frac=1.0, random_state=seed)
        sub_runners = runners[runners["race_id"].isin(chosen)]
        sub_runners = sub_runners.sample(frac=1.0, random_state=seed).head(64)
        if seed % 2:
            sub_runners = sub_runners.drop(columns=["cloth_number"], errors="ignore")
        small = entities_module._entity_frame_small(sub_races, sub_runners)
        assert small is not None
        monkeypatch.setattr(entities_module, "_SMALL_RUNNERS", -1)
        batch = entities_module.entity_frame(sub_races, sub_runners)
        monkeypatch.setattr(entities_module, "_SMALL_RUNNERS", 64)
        pd.testing.assert_frame_equal(small, batch, check_exact=True)
        pd.testing.assert_frame_equal(entities_module.entity_frame(sub_races, sub_runners), batch)


def test_small_entity_frame_defers_anything_unclean(tables):
    from racecast.features import entities as entities_module

    races, runners = tables(
        [{"race_id": "R1", "day": 0}, {"race_id": "R2", "day": 1}],
        [
            {"race_id": "R1", "horse_id": "A", "post_position": 1},
            {"race_id": "R2", "horse_id": "B", "post_position": 1},
        ],
    )
    orphan = runners.assign(race_id=["R1", "R9"])
    assert entities_module._entity_frame_small(races, orphan) is None
    duplicated = pd.concat([races, races.iloc[[0]]], ignore_index=True)
    assert entities_module._entity_frame_small(duplicated, runners) is None
    no_time = races.assign(off_time=[races["off_time"].iloc[0], pd.NaT])
    assert entities_module._entity_frame_small(no_time, runners) is None
    # ... and the batch path answers them as before
    with pytest.raises(ValueError, match="duplicated race_id 'R1'"):
        entity_frame(duplicated, runners)
    assert entity_frame(races, orphan)["horse_id"].tolist() == ["A"]


def test_small_entity_frame_breaks_off_time_ties_by_race_id(tables, monkeypatch):
    from racecast.features import entities as entities_module

    races, runners = tables(
        [{"race_id": "R2", "day": 0}, {"race_id": "R1", "day": 0}, {"race_id": "R0", "day": 1}],
        [
            {"race_id": "R0", "horse_id": "C", "post_position": 1},
            {"race_id": "R2", "horse_id": "A", "post_position": 1},
            {"race_id": "R1", "horse_id": "B", "post_position": 1},
        ],
    )
    small = entities_module.entity_frame(races, runners)
    monkeypatch.setattr(entities_module, "_SMALL_RUNNERS", -1)
    pd.testing.assert_frame_equal(small, entities_module.entity_frame(races, runners))
    assert small["race_id"].tolist() == ["R1", "R2", "R0"]


def test_entity_frame_from_columns_equals_entity_frame(tables):
    from racecast.features import entities as entities_module

    races, runners = tables(
        [{"race_id": "R2", "day": 0}, {"race_id": "R1", "day": 0}],
        [
            {"race_id": "R2", "horse_id": "A"},
            {"race_id": "R1", "horse_id": "B"},
            {"race_id": "R1", "horse_id": "C"},
        ],
    )
    as_columns = ({c: races[c].array for c in races}, {c: runners[c].array for c in runners})
    pd.testing.assert_frame_equal(
        entities_module.entity_frame_from_columns(*as_columns), entity_frame(races, runners)
    )
    # an unclean table (a duplicated race) gets the batch path's error
    duplicated = pd.concat([races, races.iloc[[0]]], ignore_index=True)
    with pytest.raises(ValueError, match="duplicated race_id 'R2'"):
        entities_module.entity_frame_from_columns(
            {c: duplicated[c].array for c in duplicated}, as_columns[1]
        )
