"""The serving subset: chosen on the training races' inner split, served exactly as evaluated."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from racecast.inference.bundle import build_bundle
from racecast.pipelines.model_zoo import serving
from racecast.pipelines.registry.nodes import build_inference_bundle
from tests.serving.tiny_zoo import evaluation_report, fitted_zoo, holdout_features, serving_zoo


def _by_runner(frame: pd.DataFrame, column: str) -> pd.Series:
    return frame.set_index(["race_id", "horse_id"])[column].sort_index()


def test_the_subset_is_chosen_on_training_races_only():
    zoo, chosen = fitted_zoo(), serving_zoo()["subset"]
    inner = chosen["inner"]
    assert chosen["models"] == ["lgbm_classifier"] and chosen["dropped"] == ["lgbm_ranker"]
    # the inner split scores the last training days: every one before the holdout
    assert pd.Timestamp(inner["first_scored_day"]) < pd.Timestamp(
        zoo["split_info"]["holdout_start"]
    )
    assert inner["fit_races"] + inner["scored_races"] <= zoo["train"]["race_id"].nunique()
    [trial] = inner["trials"]
    assert trial["model"] == "lgbm_ranker" and trial["dropped"]
    assert trial["cost"] == pytest.approx(trial["log_loss"] - inner["full_log_loss"])
    # the node takes the training races only (no holdout input); it is deterministic
    params = serving_zoo()["params"]
    again = serving.select_serving_subset(zoo["train"], params, **zoo["oof"])
    assert again == chosen


def test_a_model_whose_removal_costs_more_than_the_tolerance_is_kept():
    zoo = fitted_zoo()
    full = serving_zoo()["subset"]["inner"]
    cost = full["trials"][0]["cost"]
    params = {
        **zoo["params"],
        "serving_subset": {
            "enabled": True,
            "tolerance": cost - 1e-6,
            "drop_order": ["lgbm_ranker"],
        },
    }
    chosen = serving.select_serving_subset(zoo["train"], params, **zoo["oof"])
    assert chosen["models"] == ["lgbm_ranker", "lgbm_classifier"] and not chosen["dropped"]
    assert not chosen["inner"]["trials"][0]["dropped"]
    assert chosen["inner"]["trials"][0]["log_loss"] == pytest.approx(full["trials"][0]["log_loss"])


def test_disabled_subset_serves_every_model():
    zoo = fitted_zoo()
    params = {**zoo["params"], "serving_subset": {"enabled": False}}
    chosen = serving.select_serving_subset(zoo["train"], params, **zoo["oof"])
    assert chosen["models"] == list(zoo["oof"]) and chosen["dropped"] == []
    # nothing left out: the full stack is served as fitted, not fitted again
    train = zoo["train"]
    stacker = serving.fit_serving_stacker(train, params, chosen, zoo["stacker"], **zoo["oof"])
    blend = serving.fit_serving_blend(train, params, chosen, zoo["blend"], **zoo["oof"])
    assert stacker is zoo["stacker"] and blend is zoo["blend"]


def test_zoo_names_that_clash_with_node_inputs_are_refused():
    from racecast.pipelines.model_zoo.pipeline import create_pipeline

    with pytest.raises(ValueError, match="clash"):
        create_pipeline(models=["subset"])


@pytest.mark.parametrize(
    "bad", [{"tolerance": -0.1}, {"inner_fraction": 0.0}, {"inner_fraction": 1.0}]
)
def test_bad_settings_are_refused(bad):
    zoo = fitted_zoo()
    with pytest.raises(ValueError, match="serving_subset"):
        serving.select_serving_subset(
            zoo["train"], {**zoo["params"], "serving_subset": bad}, **zoo["oof"]
        )


def test_the_subset_bundle_serves_its_own_evaluated_predictions():
    """Served probabilities == the subset's holdout predictions (serving_stacked and
    serving_blend, what evaluation.json reports), within 1e-9 (here: to the last bit)."""
    zoo, sub = fitted_zoo(), serving_zoo()
    report = evaluation_report()
    report["models"]["serving_stacked"] = {"track": "fundamental", "log_loss": 2.01}
    bundle = build_inference_bundle(
        zoo["train"],
        report,
        sub["stacker"],
        sub["blend"],
        "combined_v1",
        0.0,
        serving_subset=sub["subset"],
        **zoo["models"],
    )
    assert sorted(bundle.base_models) == ["lgbm_classifier"]
    assert bundle.serving_subset["dropped"] == ["lgbm_ranker"] and bundle.exact
    # the ranker left out of the prediction still explains it
    assert bundle.explainer() == ("lgbm_ranker", zoo["models"]["lgbm_ranker"])
    assert bundle.holdout_metrics["stacked"]["log_loss"] == 2.01
    assert bundle.holdout_metrics["full_stacked"]["log_loss"] == 2.0
    features = holdout_features()
    explained = bundle.explain(features.head(20), top_k=3)
    assert len(explained) == 20 and all(len(v) == 3 for v in explained.values())
    out = bundle.predict(features)
    served = _by_runner(out, "p_fundamental")
    expected = _by_runner(sub["stacked_holdout"], "p")
    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(served, expected)
    market = _by_runner(out, "p_market").notna()
    blended = _by_runner(sub["blend_holdout"], "p")
    np.testing.assert_array_equal(_by_runner(out, "p_combined")[market], blended[market])
    # and they differ from the full stack's: the subset is a different model
    full = build_bundle(
        zoo["models"],
        zoo["stacker"],
        zoo["blend"],
        feature_service="combined_v1",
        trained_until=zoo["train"]["off_time"].max(),
    ).predict(features)
    assert not np.allclose(_by_runner(full, "p_fundamental"), served)
