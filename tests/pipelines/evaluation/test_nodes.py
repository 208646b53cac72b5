"""Node tests of the evaluation pipeline (fabricated predictions, no model fits)."""

from __future__ import annotations

import functools
import json

import numpy as np
import pandas as pd
import pytest

from racecast.evaluation.decision import gain_test
from racecast.evaluation.metrics import evaluate, market_probability
from racecast.pipelines.evaluation import nodes
from racecast.pipelines.model_zoo.nodes import split_training_set
from tests.pipelines.model_zoo.test_nodes import small_params, small_training_set

PARAMS = {
    "kelly_fraction": 0.25,
    "plot_models": ["stacked", "blend"],
    "importance_top_n": 10,
    "mlflow_metrics": ["pseudo_r2", "delta_r2_vs_market", "signal_recovered"],
}


class _FakeMarket:
    n_races_ = 80

    def describe(self):
        return {"log_p": {"coef": 1.02, "se": 0.03}, "capped": {"coef": -0.5, "se": 0.2}}


class _FakeBenter:
    coef_ = np.array([0.4, 0.8])
    bse_ = np.array([0.1, 0.1])
    n_races_ = 50


class FakeBlend:
    """A fitted CombinedTrack as the evaluation reads it (choice, decision, parts, staking)."""

    choice_ = "benter"
    market_ = _FakeMarket()
    benter_ = _FakeBenter()
    decision_ = {
        "rule": "ship the best passing candidate",
        "alpha": 0.05,
        "choice": "benter",
        "tests": {
            "benter": gain_test(np.random.default_rng(1).normal(0.1, 0.5, 400), 0.025, 0.8, 0.004)
        },
        "test_period": {"start": "2023-01-01", "end": "2023-12-31"},
    }
    validation_ = {
        "staking": {
            "fundamental": {"stakeable": True, "roi": 0.05, "n_bets": 120, "reason": None},
            "combined": {"stakeable": False, "reason": "validation ROI -0.01 <= 0"},
        }
    }


def _prediction(hold: pd.DataFrame, p: np.ndarray) -> pd.DataFrame:
    out = hold[["race_id", "horse_id", "off_time"]].copy()
    out["p"] = p
    out["p"] = out["p"] / out.groupby("race_id")["p"].transform("sum")
    return out


@functools.lru_cache(maxsize=1)
def make_holdout():
    """(holdout set, split info, fabricated predictions, fabricated oracle)."""
    _, hold, info = split_training_set(small_training_set(), small_params())
    rng = np.random.default_rng(0)
    market = market_probability(hold).fillna(0.1).to_numpy()
    preds = {
        "uniform": _prediction(hold, np.ones(len(hold))),
        "stacked": _prediction(hold, market * np.exp(rng.normal(0, 0.3, len(hold)))),
        "blend": _prediction(hold, market * np.exp(rng.normal(0, 0.1, len(hold)))),
        "market_corrected": _prediction(hold, market**1.05),
        "benter": _prediction(hold, market * np.exp(rng.normal(0, 0.1, len(hold)))),
        "residual": _prediction(hold, market * np.exp(rng.normal(0, 0.2, len(hold)))),
    }
    oracle = _prediction(hold, market * np.exp(rng.normal(0, 0.05, len(hold))))
    oracle = oracle.rename(columns={"p": "p_true"})[["race_id", "horse_id", "p_true"]]
    return hold, info, preds, oracle


@pytest.fixture
def holdout():
    return make_holdout()


def test_holdout_frame_keeps_complete_races(holdout):
    hold, _, preds, _ = holdout
    frame = nodes.build_holdout_frame(hold, **preds)
    assert {"p_market", "p_uniform", "p_stacked", "p_blend"} <= set(frame.columns)
    assert frame[["p_market", "p_stacked"]].notna().all().all()
    no_market = hold.groupby("race_id")["odds_final"].apply(lambda s: s.isna().any())
    assert set(frame["race_id"]) == set(no_market.index[~no_market])
    np.testing.assert_allclose(frame.groupby("race_id")["p_market"].sum(), 1.0)


def test_report_structure_and_market_row(holdout):
    hold, info, preds, _ = holdout
    frame = nodes.build_holdout_frame(hold, **preds)
    report = nodes.evaluate_models(frame, info, FakeBlend(), PARAMS)
    json.dumps(report, allow_nan=False)  # strict JSON
    assert set(report) == {"split", "models", "combined"}
    assert report["split"]["holdout_start"] == info["holdout_start"]
    assert (
        report["split"]["n_evaluated_races"] + report["split"]["n_excluded_races"]
        == info["n_holdout_races"]
    )
    assert report["split"]["oracle"] is False
    models = report["models"]
    names = ("market", "uniform", "stacked", "blend", "market_corrected", "benter", "residual")
    assert set(models) == set(names)
    assert [models[m]["track"] for m in names] == [
        "market",
        "fundamental",
        "fundamental",
        "combined",
        "market",
        "candidate",
        "candidate",
    ]
    expected = evaluate(frame, "p_market", market_col="p_market")
    for key, value in expected.items():
        assert models["market"][key] == pytest.approx(value, nan_ok=True) or (
            models["market"][key] is None and not np.isfinite(value)
        )
    assert models["uniform"]["pseudo_r2"] == pytest.approx(0.0, abs=1e-12)
    assert "lr_test_p" in models["blend"] and "lr_test_p" not in models["stacked"]
    combined = report["combined"]
    assert combined["benter"]["a_fundamental"] == pytest.approx(0.4)
    assert combined["choice"] == "benter" and combined["training"]["tests"]["benter"]["passes"]
    # holdout gains over market_corrected and the market, each with SE and p
    for key in ("blend_vs_market_corrected", "market_corrected_vs_market", "blend_vs_market"):
        test = combined["holdout"][key]
        assert test["n_races"] == frame.loc[frame["won"] == 1, "race_id"].nunique() - sum(
            frame.groupby("race_id")["won"].sum() > 1
        )
        assert test["se"] > 0 and 0 <= test["p_value"] <= 1
    gains = frame[frame["won"] == 1].groupby("race_id").filter(lambda r: len(r) == 1)
    expected_gain = np.mean(np.log(gains["p_blend"]) - np.log(gains["p_market_corrected"]))
    assert combined["holdout"]["blend_vs_market_corrected"]["mean_gain"] == pytest.approx(
        expected_gain
    )
    table = nodes.evaluation_table(report)
    assert "## Does racecast beat the market here?" in table
    assert "fundamental: stakeable" in table and "combined: not stakeable" in table
    assert "roi_flat_top1" not in table  # ROI and Kelly only for the stakeable track


def test_oracle_metrics(holdout):
    hold, info, preds, oracle = holdout
    frame = nodes.build_holdout_frame(hold, oracle_win_probabilities=oracle, **preds)
    assert "p_oracle" in frame.columns
    report = nodes.evaluate_models(frame, info, FakeBlend(), PARAMS)
    assert report["split"]["oracle"] is True
    assert "oracle" not in report["models"]
    for model in report["models"].values():
        assert {"oracle_log_loss", "gap_to_oracle", "signal_recovered"} <= set(model)
    assert report["models"]["uniform"]["signal_recovered"] == pytest.approx(0.0, abs=1e-9)

    metrics = nodes.mlflow_metrics(report, PARAMS)
    assert set(metrics) == {
        f"{model}.{metric}"
        for model in report["models"]
        for metric in PARAMS["mlflow_metrics"]
        if report["models"][model].get(metric) is not None
    }
    assert {f"{model}.pseudo_r2" for model in report["models"]} <= set(metrics)
    for item in metrics.values():
        assert set(item) == {"value", "step"} and np.isfinite(item["value"]) and item["step"] == 0

    table = nodes.evaluation_table(report)
    assert table.startswith("# Holdout evaluation")
    for name in report["models"]:
        assert f"| {name} |" in table
    assert "signal_recovered" in table


def test_plots(holdout):
    hold, _, preds, _ = holdout
    frame = nodes.build_holdout_frame(hold, **preds)
    reliability = nodes.plot_reliability(frame, PARAMS)
    top = reliability.axes[0]
    labels = [line.get_label() for line in top.get_lines()]
    assert labels[:2] == ["perfect calibration", "market"]  # the reference drawn first
    assert top.get_lines()[1].get_linestyle() == "--"
    assert f"{frame['race_id'].nunique()} holdout races" in top.get_title()
    kelly = nodes.plot_kelly(frame, PARAMS)
    (axes,) = kelly.axes
    assert f"{PARAMS.get('kelly_fraction', 0.25):g} Kelly" in axes.get_title()
    assert [line.get_linestyle() for line in axes.get_lines()][0] == "--"  # market

    class Model:
        importance_kind = "total split gain"

        def importance(self):
            return pd.Series({"rating": 3.0, "draw": 1.0}, name="importance")

    figure = nodes.plot_feature_importance(Model(), PARAMS, model_name="lgbm_ranker")
    (axes,) = figure.axes
    assert "lgbm_ranker" in axes.get_title() and "total split gain" in axes.get_title()
    assert axes.get_xlabel() == "total split gain"


def test_joint_favourites_are_broken_by_race_card_order_not_horse_id():
    # two joint favourites: cloth 1 (horse "z") wins; ordering by horse_id would pick "a"
    off = pd.Timestamp("2024-01-01 12:00", tz="UTC")
    holdout_set = pd.DataFrame(
        {
            "race_id": ["r1"] * 3,
            "horse_id": ["a", "z", "m"],
            "off_time": [off] * 3,
            "odds_final": [2.5, 2.5, 5.0],
            "won": [0, 1, 0],
            "position": [2, 1, 3],
            "cloth_number": pd.array([2, 1, 3], dtype="Int64"),
        }
    )
    frame = nodes.build_holdout_frame(holdout_set)
    assert frame["horse_id"].tolist() == ["z", "a", "m"]
    assert evaluate(frame, "p_market")["top1"] == 1.0
    without_card = nodes.build_holdout_frame(holdout_set.drop(columns="cloth_number"))
    assert evaluate(without_card, "p_market")["top1"] == 0.0


def test_verdict_does_not_credit_racecast_with_the_market_correction(holdout):
    hold, info, preds, _ = holdout
    frame = nodes.build_holdout_frame(hold, **preds)

    class MarketOnly(FakeBlend):
        choice_ = "market_corrected"
        decision_ = {**FakeBlend.decision_, "choice": "market_corrected"}

    report = nodes.evaluate_models(frame, info, MarketOnly(), PARAMS)
    report["combined"]["holdout"]["blend_vs_market"].update(mean_gain=0.004, p_value=0.01)
    text = "\n".join(nodes.verdict_lines(report))
    assert "shipped no candidate" in text and "no edge from racecast's models" in text
    assert "**beats the market**" not in text
    assert "holdout, combined over market_corrected" not in text  # identical tracks
