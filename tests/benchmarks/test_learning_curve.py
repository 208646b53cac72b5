"""benchmarks/learning_curve.py stays inside the training period and fits what it says."""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import pytest

from racecast.features.specs import FUNDAMENTAL_FEATURES
from racecast.models.split import holdout_split
from tests.benchmarks.scripts import load_script
from tests.pipelines.model_zoo.test_nodes import small_params, small_training_set

MODELS = ["conditional_logit", "logistic"]


lc = load_script("learning_curve")


def _report(frame):
    return lc.learning_curve(frame, small_params(), MODELS, [0.5, 1.0], inner_fraction=0.25)


def test_the_protocol_holdout_never_reaches_a_fit_or_a_score():
    frame = small_training_set()
    report = _report(frame)
    holdout = holdout_split(frame, 0.2).holdout_mask(frame).to_numpy(bool)
    # Garbage in every fundamental feature and the labels of the holdout: unseen, no change.
    spoiled = frame.copy()
    spoiled.loc[holdout, FUNDAMENTAL_FEATURES] = 1e6
    spoiled.loc[holdout, "position"] = np.nan
    spoiled_report = _report(spoiled)
    for row, again in zip(report["curve"], spoiled_report["curve"], strict=True):
        for name in MODELS:
            assert row[name]["pseudo_r2"] == pytest.approx(again[name]["pseudo_r2"], abs=1e-12)
    # The holdout enters only the market yardstick.
    assert report["market_pseudo_r2"]["protocol_holdout"] == pytest.approx(
        lc.market_pseudo_r2(frame[holdout])
    )
    assert report["n_inner_fit_races"] + report["n_inner_validation_races"] == (
        frame.loc[~holdout, "race_id"].nunique()
    )


def test_fractions_fit_on_the_latest_days_and_the_counts_add_up():
    frame = small_training_set()
    report = _report(frame)
    fit_races = [row["n_fit_races"] for row in report["curve"]]
    assert fit_races[0] < fit_races[1] == report["n_inner_fit_races"]
    n_train = report["protocol_split"]["n_train_races"]
    assert report["n_inner_fit_races"] + report["n_inner_validation_races"] == n_train
    for row in report["curve"]:
        for name in MODELS:
            value = row[name]["pseudo_r2"]
            assert np.isfinite(value)
            share = value / report["market_pseudo_r2"]["inner_validation"]
            assert row[name]["share_of_market"] == pytest.approx(share)


@pytest.mark.parametrize("text", ["0", "1.5", "a,b", ""])
def test_bad_fractions_name_the_option(text):
    with pytest.raises(argparse.ArgumentTypeError, match="--fractions"):
        lc._fractions(text)


def test_a_missing_training_set_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        lc.parse_args(["--training-set", str(tmp_path / "nope.parquet")])
    assert "nope.parquet: no such file" in capsys.readouterr().err


def test_a_variant_overrides_only_the_kwargs_it_names():
    zoo = {
        "models": {"random_forest": {"class": "RandomForestModel", "kwargs": {"n_estimators": 9}}},
        "cv": {"relevance_top_by_model": {"random_forest": 4}},
    }
    merged, names = lc.with_variants(
        zoo, ["random_forest"], [("random_forest", {"model_params": {"max_samples": 0.5}})]
    )
    label = 'random_forest {"model_params":{"max_samples":0.5}}'
    assert names == ["random_forest", label]
    assert merged["models"][label]["kwargs"] == {
        "n_estimators": 9,
        "model_params": {"max_samples": 0.5},
    }
    assert merged["cv"]["relevance_top_by_model"][label] == 4
    assert zoo["models"]["random_forest"]["kwargs"] == {"n_estimators": 9}  # not mutated


def test_contribution_scores_each_model_left_out_on_training_races_only():
    from tests.serving.tiny_zoo import fitted_zoo

    zoo = fitted_zoo()
    report = lc.stack_contribution(zoo["train"], zoo["oof"], zoo["params"])
    assert set(report["without"]) == set(zoo["oof"])
    assert pd.Timestamp(report["first_scored_day"]) < pd.Timestamp(
        zoo["split_info"]["holdout_start"]
    )
    for row in report["without"].values():
        assert row["cost"] == pytest.approx(row["log_loss"] - report["full_log_loss"])
