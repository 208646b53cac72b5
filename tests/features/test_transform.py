"""The shared request-time transform, race-relative features and the reference join."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from racecast.features.entities import entity_frame
from racecast.features.specs import (
    CONTEXT_COLUMNS,
    FUNDAMENTAL_FEATURES,
    KEY_COLUMNS,
    MARKET_FEATURES,
    VIEWS,
    all_state_features,
)
from racecast.features.state import build_state_tables
from racecast.features.transform import (
    build_features,
    market_features,
    point_in_time_join,
    race_relative,
)


def test_race_relative_values_and_descending_rank():
    frame = pd.DataFrame(
        {
            "race_id": ["A", "A", "A", "B", "B"],
            "x": [1.0, 3.0, np.nan, 5.0, 5.0],
        },
        index=[10, 11, 12, 13, 14],
    )
    out = race_relative(frame, ["x"])
    assert list(out.columns) == ["x_rel", "x_rank"]
    assert out["x_rel"].tolist()[:2] == [-1.0, 1.0]
    assert np.isnan(out.loc[12, "x_rel"]) and np.isnan(out.loc[12, "x_rank"])
    assert out["x_rank"].tolist()[:2] == [2.0, 1.0]
    assert out.loc[[13, 14], "x_rank"].tolist() == [1.0, 1.0]  # ties share the best rank
    assert out.loc[[13, 14], "x_rel"].tolist() == [0.0, 0.0]
    assert out.index.equals(frame.index)


def test_race_relative_one_race_alone_equals_multi_race(world):
    races, runners = world
    ctx = entity_frame(races, runners)
    cols = ["rating", "weight_carried_kg", "odds_final"]
    full = race_relative(ctx, cols)
    for race_id in ctx["race_id"].unique()[:10]:
        alone = race_relative(ctx.loc[ctx["race_id"] == race_id], cols)
        pd.testing.assert_frame_equal(alone, full.loc[alone.index], check_exact=True)


def test_race_relative_missing_column_is_named():
    with pytest.raises(KeyError, match="'nope'"):
        race_relative(pd.DataFrame({"race_id": ["A"], "x": [1.0]}), ["x", "nope"])


def test_market_features_normalise_the_overround():
    ctx = pd.DataFrame(
        {
            "race_id": ["A", "A", "A", "B", "B"],
            "odds_final": [1.5, 3.0, 3.0, 2.0, np.nan],
        }
    )
    out = market_features(ctx)
    assert list(out.columns) == MARKET_FEATURES
    np.testing.assert_allclose(np.exp(out["mkt_log_prob"].iloc[:3]), [0.5, 0.25, 0.25])
    np.testing.assert_allclose(out["mkt_norm_odds"].iloc[:3], [2.0, 4.0, 4.0])
    assert out["mkt_odds_rank"].tolist()[:3] == [1.0, 2.0, 2.0]
    assert out["mkt_log_prob"].iloc[3] == pytest.approx(0.0)
    assert out.iloc[4].isna().all()


def test_build_features_columns_and_keys(world, features):
    races, runners = world
    feats = features(races, runners)
    assert list(feats.columns) == KEY_COLUMNS + FUNDAMENTAL_FEATURES + MARKET_FEATURES
    assert len(set(FUNDAMENTAL_FEATURES)) == len(FUNDAMENTAL_FEATURES)
    assert not set(FUNDAMENTAL_FEATURES) & set(MARKET_FEATURES)
    assert not any("odds" in c or c.startswith("mkt_") for c in FUNDAMENTAL_FEATURES)
    ctx = entity_frame(races, runners)
    assert len(feats) == len(ctx)
    assert feats["race_id"].tolist() == ctx["race_id"].tolist()
    assert set(feats["is_debut"].unique()) == {0, 1}
    numeric = feats[FUNDAMENTAL_FEATURES + MARKET_FEATURES]
    assert all(dtype.kind in "fi" for dtype in numeric.dtypes)
    # the market features are the only columns that change when odds change
    shifted = runners.assign(odds_final=runners["odds_final"] * 2.0 + 1.0)
    changed = features(races, shifted)
    pd.testing.assert_frame_equal(changed[FUNDAMENTAL_FEATURES], feats[FUNDAMENTAL_FEATURES])
    assert not changed["mkt_norm_odds"].equals(feats["mkt_norm_odds"])


def test_scoring_one_race_alone_gives_the_same_numbers(world):
    races, runners = world
    ctx = entity_frame(races, runners)
    joined = point_in_time_join(ctx, build_state_tables(races, runners))
    full = build_features(ctx, joined)
    for race_id in ctx["race_id"].unique()[[5, 20, -1]]:
        mask = (ctx["race_id"] == race_id).to_numpy()
        alone = build_features(ctx.loc[mask], joined.loc[mask])
        pd.testing.assert_frame_equal(alone, full.loc[mask], check_exact=True)


def test_build_features_accepts_online_style_state(world):
    """Feast online responses: object columns with None instead of NaN."""
    races, runners = world
    ctx = entity_frame(races, runners)
    joined = point_in_time_join(ctx, build_state_tables(races, runners))
    served = (
        joined[all_state_features()]
        .astype(object)
        .where(joined[all_state_features()].notna(), None)
    )
    pd.testing.assert_frame_equal(
        build_features(ctx, served), build_features(ctx, joined), check_dtype=False
    )


def test_build_features_errors_name_the_problem(world):
    races, runners = world
    ctx = entity_frame(races, runners)
    joined = point_in_time_join(ctx, build_state_tables(races, runners))
    with pytest.raises(KeyError, match="h_best_fig"):
        build_features(ctx, joined.drop(columns="h_best_fig"))
    with pytest.raises(KeyError, match="'going'"):
        build_features(ctx.drop(columns="going"), joined)
    with pytest.raises(ValueError, match="index"):
        build_features(ctx, joined.reset_index(drop=True).iloc[::-1])


def test_build_features_does_not_mutate_inputs(world):
    races, runners = world
    ctx = entity_frame(races, runners)
    joined = point_in_time_join(ctx, build_state_tables(races, runners))
    ctx_before, joined_before = ctx.copy(), joined.copy()
    build_features(ctx, joined)
    pd.testing.assert_frame_equal(ctx, ctx_before)
    pd.testing.assert_frame_equal(joined, joined_before)


# --- point-in-time join -----------------------------------------------------------------


def _single_view_tables(rows: list[tuple[str, str, float]]) -> dict[str, pd.DataFrame]:
    """Empty state tables except horse_form rows (horse_id, event_timestamp, h_runs)."""
    out = {}
    for name, spec in VIEWS.items():
        cols = [*spec.entities, "event_timestamp", *spec.features]
        out[name] = pd.DataFrame({c: pd.Series(dtype="object") for c in cols})
        out[name]["event_timestamp"] = pd.Series(dtype="datetime64[ns, UTC]")
    horse = pd.DataFrame(
        [
            {
                "horse_id": h,
                "event_timestamp": pd.Timestamp(ts, tz="UTC"),
                **dict.fromkeys(VIEWS["horse_form"].features),
            }
            for h, ts, _ in rows
        ]
    )
    horse["h_runs"] = [r for _, _, r in rows]
    out["horse_form"] = horse
    return out


def test_point_in_time_join_takes_latest_row_at_or_before_the_off():
    tables_ = _single_view_tables(
        [
            ("A", "2024-01-01 12:00:01", 1),
            ("A", "2024-01-05 12:00:00", 2),  # exactly at the second race's off: visible
            ("A", "2024-01-09 12:00:01", 3),  # one second after the third off: not visible
            ("B", "2024-01-01 12:00:01", 7),
        ]
    )
    ctx = pd.DataFrame(
        {
            "horse_id": ["A", "A", "A", "B", None],
            "jockey_id": ["J", "J", "J", None, "J"],
            "trainer_id": ["T"] * 5,
            "track_key": ["ST|turf|1200"] * 5,
            "off_time": pd.to_datetime(
                [
                    "2024-01-01 12:00",
                    "2024-01-05 12:00",
                    "2024-01-09 12:00",
                    "2024-02-01 00:00",
                    "2024-02-01 00:00",
                ],
                utc=True,
            ),
        },
        index=[5, 3, 9, 1, 0],
    )
    joined = point_in_time_join(ctx, tables_)
    assert joined.index.equals(ctx.index)
    h_runs = joined["h_runs"]
    assert np.isnan(h_runs.loc[5])
    assert h_runs.loc[3] == 2.0 and h_runs.loc[9] == 2.0 and h_runs.loc[1] == 7.0
    assert np.isnan(h_runs.loc[0])  # null key: no state
    assert list(joined.columns[: len(ctx.columns)]) == list(ctx.columns)
    assert set(all_state_features()) <= set(joined.columns)


def test_point_in_time_join_ttl_drops_stale_state():
    tables_ = _single_view_tables([("A", "2024-01-01 12:00:01", 1)])
    ctx = pd.DataFrame(
        {
            "horse_id": ["A", "A"],
            "jockey_id": ["J", "J"],
            "trainer_id": ["T", "T"],
            "track_key": ["ST|turf|1200"] * 2,
            "off_time": pd.to_datetime(["2024-01-10 12:00", "2024-01-12 12:00"], utc=True),
        }
    )
    assert point_in_time_join(ctx, tables_)["h_runs"].tolist() == [1.0, 1.0]
    with_ttl = point_in_time_join(ctx, tables_, ttl_days=10)["h_runs"]
    assert with_ttl.iloc[0] == 1.0 and np.isnan(with_ttl.iloc[1])


def test_point_in_time_join_missing_view_is_named(world):
    races, runners = world
    ctx = entity_frame(races, runners)
    tables_ = build_state_tables(races, runners)
    del tables_["track_profile"]
    with pytest.raises(KeyError, match="track_profile"):
        point_in_time_join(ctx, tables_)


def test_context_columns_come_from_entity_frame(world):
    races, runners = world
    ctx = entity_frame(races, runners)
    assert set(CONTEXT_COLUMNS) <= set(ctx.columns)
