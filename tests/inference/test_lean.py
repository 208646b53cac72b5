"""The lean bundle: models the stacker does not use are left out, and nothing changes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from racecast.features.specs import FUNDAMENTAL_FEATURES
from racecast.inference.bundle import InferenceBundle, build_bundle
from racecast.inference.lean import skipped_models, stacker_weights
from racecast.inference.registry import model_description
from racecast.models.base import RaceModel
from racecast.pipelines.model_zoo import nodes
from tests.serving.tiny_zoo import fitted_zoo, holdout_features, make_bundle, tiny_params


class _Flat(RaceModel):
    """A fitted model that scores every runner alike (uniform probabilities per race)."""

    def _fit_sorted(self, X, y, layout, relevance) -> None:
        self.fitted_ = True

    def _score_sorted(self, X, layout) -> np.ndarray:
        return np.zeros(X.shape[0])


def _with_flat_model() -> tuple[dict, RaceModel, RaceModel]:
    """The tiny zoo plus a uniform model, and a stacker fitted with its OOF column."""
    zoo = fitted_zoo()
    train = zoo["train"]
    flat = _Flat().fit(train[FUNDAMENTAL_FEATURES[:3]], train["won"], train["race_id"])
    params = tiny_params()
    oof = {
        name: nodes.fit_oof(train, spec, params["cv"], {}, model_name=name)
        for name, spec in params["models"].items()
    }
    flat_oof = next(iter(oof.values())).copy()
    size = flat_oof.groupby("race_id")["p"].transform("size")
    flat_oof["p"] = np.where(flat_oof["p"].notna(), 1.0 / size, np.nan)
    stacker = nodes.fit_stacker(train, params, **oof, flat=flat_oof)
    return {**zoo["models"], "flat": flat}, flat, stacker


def test_weights_of_every_zoo_model_and_the_default_bundle_is_exact():
    zoo = fitted_zoo()
    weights = stacker_weights(zoo["stacker"])
    assert set(weights) == set(zoo["models"])
    for w in weights.values():
        assert w["weight"] == max(abs(w["stage_a_coef"]), w["stage_b_gain_share"])
        assert w["unused"] == (w["stage_a_coef"] == 0 and w["stage_b_splits"] == 0)
    bundle = make_bundle()
    assert bundle.stacker_weights == weights
    assert set(bundle.skipped_models) == {n for n, w in weights.items() if w["unused"]}
    assert bundle.exact
    assert set(bundle.base_models) | set(bundle.skipped_models) == set(zoo["models"])


def test_an_unused_model_is_left_out_and_the_predictions_do_not_change():
    zoo = fitted_zoo()
    models, _, stacker = _with_flat_model()
    weights = stacker_weights(stacker)
    assert weights["flat"]["unused"], weights["flat"]  # coefficient 0, never split on
    lean = build_bundle(
        models,
        stacker,
        zoo["blend"],
        feature_service="combined_v1",
        trained_until=zoo["train"]["off_time"].max(),
    )
    assert "flat" in lean.skipped_models and "flat" not in lean.base_models and lean.exact
    full = InferenceBundle(
        feature_service="combined_v1",
        fundamental_features=lean.fundamental_features,
        base_models=models,
        stacker=stacker,
        blend=zoo["blend"],
        model_version="full",
        trained_until=lean.trained_until,
        holdout_metrics={},
    )
    features = holdout_features()
    pd.testing.assert_frame_equal(lean.predict(features), full.predict(features))
    text = model_description(lean)
    assert "flat" in text and "exactly" in text


def test_a_positive_threshold_leaves_out_used_models_and_says_so():
    zoo = fitted_zoo()
    weights = stacker_weights(zoo["stacker"])
    used = {n: w for n, w in weights.items() if not w["unused"]}
    smallest = min(used, key=lambda n: used[n]["weight"])
    bundle = build_bundle(
        zoo["models"],
        zoo["stacker"],
        zoo["blend"],
        feature_service="combined_v1",
        trained_until=zoo["train"]["off_time"].max(),
        skip_max_weight=used[smallest]["weight"],
    )
    assert smallest in bundle.skipped_models and not bundle.exact
    out = bundle.predict(holdout_features())
    np.testing.assert_allclose(out.groupby("race_id")["p_fundamental"].sum(), 1.0, atol=1e-9)
    assert "differ" in model_description(bundle)
    with pytest.raises(ValueError, match="every base model"):
        build_bundle(
            zoo["models"],
            zoo["stacker"],
            zoo["blend"],
            feature_service="combined_v1",
            trained_until=zoo["train"]["off_time"].max(),
            skip_max_weight=1e9,
        )
    with pytest.raises(ValueError, match=">= 0"):
        skipped_models(weights, -0.1)
