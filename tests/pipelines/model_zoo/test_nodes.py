"""Node tests of the model_zoo pipeline on a small random race world."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from racecast.features.entities import entity_frame
from racecast.features.specs import FUNDAMENTAL_FEATURES
from racecast.models import oof as oof_module
from racecast.models.factory import build_model
from racecast.models.split import compute_race_days, holdout_split
from racecast.pipelines.model_zoo import ZOO_MODELS, nodes
from tests.features.conftest import compute_features, make_world

PARAMS_FILE = Path(__file__).resolve().parents[3] / "conf" / "base" / "parameters" / "model_zoo.yml"

CHEAP_MODELS = {
    "logistic": {"class": "LogisticModel", "kwargs": {"C": 1.0}},
    "conditional_logit": {"class": "ConditionalLogit", "kwargs": {"max_iter": 200}},
}


@functools.lru_cache(maxsize=1)
def _world_training_set() -> pd.DataFrame:
    races, runners = make_world(seed=3, n_races=240, n_days=40, n_horses=200)
    labels = entity_frame(races, runners)[["race_id", "horse_id", "won", "position", "field_size"]]
    odds = runners[["race_id", "horse_id", "odds_final"]]
    frame = (
        compute_features(races, runners)
        .merge(labels, on=["race_id", "horse_id"])
        .merge(odds, on=["race_id", "horse_id"])
    )
    return frame[frame["won"].notna()].reset_index(drop=True)


def small_training_set() -> pd.DataFrame:
    """A training set like the features pipeline's (keys, features, odds, labels)."""
    return _world_training_set().copy()


def small_params(**overrides) -> dict:
    """The project's model_zoo parameters with two cheap models and a small stacker."""
    params = yaml.safe_load(PARAMS_FILE.read_text())["model_zoo"]
    params["cv"] = {"n_folds": 2, "min_train_fraction": 0.4, "relevance_top": 3}
    params["models"] = CHEAP_MODELS
    params["stacker"]["kwargs"] = {"n_estimators": 20, "n_folds": 3, "n_jobs": 1}
    params["second_stage"] = {
        **params["second_stage"],
        "n_folds": 3,
        "residual": {"n_estimators": 20, "num_leaves": 3, "min_child_samples": 20},
    }
    params.update(overrides)
    return params


@pytest.fixture
def training_set() -> pd.DataFrame:
    return small_training_set()


@pytest.fixture
def split(training_set):
    return nodes.split_training_set(training_set, small_params())


def test_zoo_models_match_the_parameters():
    params = yaml.safe_load(PARAMS_FILE.read_text())["model_zoo"]
    assert list(params["models"]) == list(ZOO_MODELS)
    for spec in params["models"].values():
        build_model(spec)  # every default spec is valid
    assert params["tune"] is False


def test_a_model_can_have_its_own_relevance_top(split):
    train, _, _ = split
    cv = {"relevance_top": 3, "relevance_top_by_model": {"conditional_logit": 8}}
    ranker = nodes._relevance(train, cv, "lgbm_ranker")
    logit = nodes._relevance(train, cv, "conditional_logit")
    assert ranker.max() == 3 and logit.max() == 8
    position = train["position"].astype("float64").to_numpy()
    placed = position <= 8
    np.testing.assert_array_equal(logit.to_numpy()[placed], 9 - position[placed])
    # the exploded logit reads those places: its OOF differs from the winner-only logit's
    spec = {"class": "ConditionalLogit", "kwargs": {"max_iter": 200, "rank_depth": 8}}
    winner_only = {"class": "ConditionalLogit", "kwargs": {"max_iter": 200}}
    cv = {**cv, "n_folds": 2, "min_train_fraction": 0.4}
    tuned = {"tuned": False}
    a = nodes.fit_oof(train, spec, cv, tuned, model_name="conditional_logit")
    b = nodes.fit_oof(train, winner_only, cv, tuned, model_name="conditional_logit")
    assert a["p"].notna().sum() == b["p"].notna().sum() > 0
    assert not np.allclose(a["p"].dropna(), b["p"].dropna())


def test_real_data_envs_keep_the_winner_only_logit_and_the_hk_stacker():
    conf = PARAMS_FILE.parents[2]
    for env in ("hkjc", "racecards"):
        override = yaml.safe_load((conf / env / "parameters" / "model_zoo.yml").read_text())
        zoo = override["model_zoo"]
        assert zoo["models"]["conditional_logit"]["kwargs"]["rank_depth"] == 1
        assert zoo["stacker"]["kwargs"] == {
            "C": 0.01,
            "calibration_prior": 20.0,
            "use_stage_b": True,
        }


def test_split_cuts_at_a_whole_race_day(training_set):
    train, hold, info = nodes.split_training_set(training_set, small_params())
    expected = holdout_split(training_set, 0.2)
    assert set(hold["race_id"]) == set(expected.holdout_race_ids)
    assert set(train["race_id"]) == set(expected.train_race_ids)
    assert not set(train["race_id"]) & set(hold["race_id"])
    assert len(train) + len(hold) == len(training_set)
    start = pd.Timestamp(info["holdout_start"])
    assert compute_race_days(train).max() < start
    assert compute_race_days(hold).min() == start
    assert info["n_train_races"] == train["race_id"].nunique()
    assert info["n_holdout_races"] == hold["race_id"].nunique()
    assert train["off_time"].is_monotonic_increasing and hold["off_time"].is_monotonic_increasing


def test_oof_never_trains_on_later_days(split, monkeypatch):
    train, _, _ = split
    params = small_params()
    seen = []
    real = oof_module.assert_no_lookahead

    def spy(folds, race_days):
        seen.append((folds, np.asarray(race_days)))
        real(folds, race_days)

    monkeypatch.setattr(oof_module, "assert_no_lookahead", spy)
    tuned = nodes.tune_hyperparameters(train, params)
    spec = params["models"]["logistic"]
    oof = nodes.fit_oof(train, spec, params["cv"], tuned, model_name="logistic")
    ((folds, days),) = seen
    assert len(folds) == params["cv"]["n_folds"]
    for train_idx, valid_idx in folds:
        assert days[train_idx].max() < days[valid_idx].min()
    # the first race days are never predicted; the others are, per race summing to 1
    predicted = oof["p"].notna()
    first_valid = min(days[v].min() for _, v in folds)
    assert (~predicted).sum() == (days < first_valid).sum()
    sums = oof[predicted].groupby("race_id")["p"].sum()
    np.testing.assert_allclose(sums, 1.0, atol=1e-9)

    # changing the results and features of the last fold does not move earlier predictions
    last_valid = folds[-1][1]
    altered = train.copy()
    altered.loc[last_valid, "won"] = 0
    first_rows = altered.loc[last_valid].groupby("race_id").head(1).index
    altered.loc[first_rows, "won"] = 1
    altered.loc[last_valid, "rating"] = 0.0
    oof_altered = nodes.fit_oof(altered, spec, params["cv"], tuned, model_name="logistic")
    earlier = np.setdiff1d(np.flatnonzero(predicted), last_valid)
    np.testing.assert_allclose(oof_altered["p"].to_numpy()[earlier], oof["p"].to_numpy()[earlier])


def test_fit_model_and_holdout_use_fundamental_features_only(split):
    train, hold, _ = split
    params = small_params()
    tuned = nodes.tune_hyperparameters(train, params)
    model = nodes.fit_model(
        train, params["models"]["logistic"], params["cv"], tuned, model_name="logistic"
    )
    assert list(model.feature_names_in_) == FUNDAMENTAL_FEATURES
    pred = nodes.predict_holdout(model, hold)
    assert list(pred.columns) == ["race_id", "horse_id", "off_time", "p"]
    assert len(pred) == len(hold)
    np.testing.assert_allclose(pred.groupby("race_id")["p"].sum(), 1.0, atol=1e-9)


def _zoo_outputs(train, hold, params):
    tuned = nodes.tune_hyperparameters(train, params)
    oof, holdout = {}, {}
    for name, spec in params["models"].items():
        oof[name] = nodes.fit_oof(train, spec, params["cv"], tuned, model_name=name)
        model = nodes.fit_model(train, spec, params["cv"], tuned, model_name=name)
        holdout[name] = nodes.predict_holdout(model, hold)
    return oof, holdout


def test_stacker_and_blend(split):
    train, hold, _ = split
    params = small_params()
    oof, holdout = _zoo_outputs(train, hold, params)
    stacker = nodes.fit_stacker(train, params, **oof)
    assert {"p_logistic", "p_conditional_logit"} <= set(stacker.feature_names_in_)
    assert not any(c.startswith("mkt_") or c == "odds_final" for c in stacker.feature_names_in_)
    stacked = nodes.predict_stacked_holdout(stacker, hold, **holdout)
    assert len(stacked) == len(hold) and stacked["p"].between(0, 1).all()
    np.testing.assert_allclose(stacked.groupby("race_id")["p"].sum(), 1.0, atol=1e-9)
    # not worse than uniform on the holdout's single-winner races
    frame = hold[["race_id", "horse_id", "won"]].merge(stacked, on=["race_id", "horse_id"])
    winners = frame.groupby("race_id")["won"].transform("sum")
    single = frame[winners == 1]
    n = single.groupby("race_id")["p"].transform("size")
    won = single["won"] == 1
    assert -np.log(single.loc[won, "p"]).mean() < np.log(n[won]).mean()

    blend, stacked_oof = nodes.fit_blend(train, params, **oof)
    assert np.isfinite(blend.benter_.coef_).all() and np.isfinite(blend.market_.coef_).all()
    decision = blend.decision_
    assert blend.choice_ == decision["choice"] in ("market_corrected", "benter", "residual")
    assert set(decision["tests"]) == {"benter", "residual"}
    # the rolling-origin test races are training races, after the first stacked block
    assert decision["test_period"]["end"] < pd.Timestamp(hold["off_time"].min()).date().isoformat()
    assert decision["test_period"]["start"] > stacked_oof["off_time"].min().date().isoformat()
    assert len(stacked_oof) and stacked_oof["p"].notna().all()
    np.testing.assert_allclose(stacked_oof.groupby("race_id")["p"].sum(), 1.0, atol=1e-9)
    blended = nodes.predict_blend_holdout(blend, stacked, hold)
    assert len(blended) == len(hold) and blended["p"].notna().all()
    np.testing.assert_allclose(blended.groupby("race_id")["p"].sum(), 1.0, atol=1e-9)
    corrected, benter, residual = nodes.predict_candidates_holdout(blend, stacked, hold)
    for frame in (corrected, benter, residual):
        priced = frame["p"].notna()
        assert priced.any() and len(frame) == len(hold)
        np.testing.assert_allclose(frame[priced].groupby("race_id")["p"].sum(), 1.0, atol=1e-9)


def test_tuning_off_returns_configured_kwargs(split):
    train, _, _ = split
    params = small_params(
        models={"lgbm_ranker": {"class": "LGBMRankerModel", "kwargs": {"n_estimators": 20}}}
    )
    out = nodes.tune_hyperparameters(train, params)
    assert out == {
        "model": "lgbm_ranker",
        "tuned": False,
        "kwargs": {"n_estimators": 20},
        "best_log_loss": None,
        "n_trials": 0,
    }


def test_tuning_on_searches_inside_training(split):
    train, _, _ = split
    params = small_params(
        tune=True,
        tuning={"model": "lgbm_ranker", "n_trials": 2, "n_folds": 2, "seed": 0},
        models={"lgbm_ranker": {"class": "LGBMRankerModel", "kwargs": {"n_jobs": 1}}},
    )
    out = nodes.tune_hyperparameters(train, params)
    assert out["tuned"] is True and out["n_trials"] == 2
    assert {"n_estimators", "learning_rate", "num_leaves", "n_jobs"} <= set(out["kwargs"])
    assert np.isfinite(out["best_log_loss"])
    spec = nodes._spec_with_tuning("lgbm_ranker", params["models"]["lgbm_ranker"], out)
    assert spec["kwargs"] == out["kwargs"]
    # other models are untouched
    assert (
        nodes._spec_with_tuning("logistic", CHEAP_MODELS["logistic"], out)
        == CHEAP_MODELS["logistic"]
    )


def _keyed_rows(n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    off = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 5, n), unit="D")
    return pd.DataFrame(
        {
            "off_time": off,
            "race_id": [f"R{i}" for i in rng.integers(0, 4, n)],
            "horse_id": [f"H{i:02d}" for i in rng.permutation(n)],
            "x": rng.normal(size=n),
        }
    )


def test_sorted_is_the_stable_time_sort_whether_or_not_the_frame_is_in_order():
    from racecast.models.split import TIME_ORDER
    from racecast.pipelines.model_zoo.nodes import _sorted

    shuffled = _keyed_rows()
    expected = shuffled.sort_values(TIME_ORDER, kind="mergesort").reset_index(drop=True)
    pd.testing.assert_frame_equal(_sorted(shuffled), expected, check_exact=True)
    in_order = expected.set_axis(pd.RangeIndex(100, 100 + len(expected)))
    kept = _sorted(in_order)
    pd.testing.assert_frame_equal(kept, expected, check_exact=True)
    assert kept is not in_order and list(in_order.index[:1]) == [100]  # the input keeps its index


def test_sorted_puts_null_keys_where_the_sort_puts_them():
    from racecast.models.split import TIME_ORDER
    from racecast.pipelines.model_zoo.nodes import _sorted

    frame = _keyed_rows().sort_values(TIME_ORDER, kind="mergesort").reset_index(drop=True)
    frame.loc[0, "horse_id"] = None  # in order but for a null key: the sort moves it
    expected = frame.sort_values(TIME_ORDER, kind="mergesort").reset_index(drop=True)
    pd.testing.assert_frame_equal(_sorted(frame), expected, check_exact=True)
