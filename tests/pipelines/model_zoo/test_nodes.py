"""Node tests of the model_zoo pipeline on a small random race world."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from racecast.evaluation.blend import one_sided_p, validate_blend
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
    assert np.isfinite(blend.coef_).all() and np.isfinite(blend.log_likelihood_)
    assert isinstance(blend.fallback_to_market_, bool) and "fallback" in blend.validation_
    assert blend.inner_fit_until_ < pd.Timestamp(hold["off_time"].min()).date().isoformat()
    # the stacked OOF reference covers only races after the inner stacker's training days
    assert len(stacked_oof) and stacked_oof["p"].notna().all()
    assert stacked_oof["off_time"].min().date().isoformat() >= blend.inner_fit_until_
    np.testing.assert_allclose(stacked_oof.groupby("race_id")["p"].sum(), 1.0, atol=1e-9)
    blended = nodes.predict_blend_holdout(blend, stacked, hold)
    assert len(blended) == len(hold) and blended["p"].notna().all()
    np.testing.assert_allclose(blended.groupby("race_id")["p"].sum(), 1.0, atol=1e-9)


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


def _blend_rows(informative: bool, seed: int = 0) -> pd.DataFrame:
    """Races where the winner is drawn from p_true; the market is p_true blurred.

    The fundamental is informative on the first 70% of the days; when ``informative`` is
    False it is pure noise afterwards (it stopped working: the blend learnt to trust it).
    """
    rng = np.random.default_rng(seed)
    rows = []
    start = pd.Timestamp("2024-01-01", tz="UTC")
    for r in range(600):
        n = 10
        strength = rng.normal(0, 1, n)
        p_true = np.exp(strength) / np.exp(strength).sum()
        winner = rng.choice(n, p=p_true)
        market = np.exp(strength + rng.normal(0, 0.8, n))
        late = r >= 420
        fund = (
            np.exp(strength + rng.normal(0, 0.5, n))
            if informative or not late
            else np.exp(rng.normal(0, 1.5, n))
        )
        for i in range(n):
            rows.append(
                {
                    "race_id": f"r{r}",
                    "off_time": start + pd.Timedelta(days=r // 6),
                    "won": int(i == winner),
                    "p_fund": fund[i] / fund.sum(),
                    "p_market": market[i] / market.sum(),
                    # fair odds of an efficient pool after an 18% take
                    "odds_final": 0.82 / p_true[i],
                }
            )
    return pd.DataFrame(rows)


def test_blend_falls_back_to_the_market_only_when_the_fundamental_does_not_help():
    columns = ["race_id", "won", "p_fund", "p_market"]
    params = {"validation_fraction": 0.3, "validation_alpha": 0.05}
    noise = validate_blend(_blend_rows(informative=False), columns, params)
    useful = validate_blend(_blend_rows(informative=True), columns, params)
    # 600 races at 6 a day: the last 30% of the 100 days are 30 days = 180 races
    assert noise["n_races"] == useful["n_races"] == 180
    assert noise["fallback"] and noise["blend_log_loss"] > noise["market_log_loss"]
    assert noise["gain_p_value"] > 0.5
    assert not useful["fallback"] and useful["gain_p_value"] < 0.05
    assert useful["blend_log_loss"] < useful["market_log_loss"] - 0.02
    # the same validation races judge the staking of both tracks
    for figures in (*noise["staking"].values(), *useful["staking"].values()):
        assert figures["n_races"] == 180 and figures["n_bets"] >= 30
        assert figures["stakeable"] == (figures["roi"] > 0)
        assert (figures["reason"] is None) == figures["stakeable"]
    off = validate_blend(_blend_rows(False), columns, {"validation_fraction": None})
    assert off["fallback"] is False
    assert {t: f["stakeable"] for t, f in off["staking"].items()} == {
        "fundamental": False,
        "combined": False,
    }
    assert "validation_fraction is null" in off["staking"]["combined"]["reason"]


def test_blend_gain_without_evidence_falls_back_unless_alpha_is_off():
    """A mean gain that is positive but not significant: fallback at alpha, none without."""
    rng = np.random.default_rng(7)
    z = rng.normal(0.0, 1.0, 400)
    gain = 0.002 + 0.1 * (z - z.mean()) / z.std(ddof=1)  # mean 0.002, sd 0.1: t = 0.4
    assert one_sided_p(gain) == pytest.approx(stats.t.sf(0.4, df=399))  # ~0.34
    assert one_sided_p(np.full(10, 0.3)) == 1.0  # no spread: undefined -> no evidence
    assert one_sided_p(rng.normal(0.05, 0.1, 400)) < 1e-6
    rows = _blend_rows(informative=True)
    columns = ["race_id", "won", "p_fund", "p_market"]
    strict = validate_blend(rows, columns, {"validation_fraction": 0.3, "validation_alpha": 1e-12})
    lax = validate_blend(rows, columns, {"validation_fraction": 0.3, "validation_alpha": None})
    assert strict["gain_p_value"] == lax["gain_p_value"] >= 1e-12
    assert strict["fallback"] and not lax["fallback"]
    with pytest.raises(ValueError, match="validation_alpha"):
        validate_blend(rows, columns, {"validation_fraction": 0.3, "validation_alpha": 2})
