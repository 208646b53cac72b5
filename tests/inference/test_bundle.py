"""The inference bundle: predictions equal the model_zoo pipeline's, market, explanations."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from racecast.evaluation.metrics import market_probability
from racecast.inference.bundle import BIAS_COLUMN, OUTPUT_COLUMNS, InferenceBundle, build_bundle
from tests.serving.tiny_zoo import fitted_zoo, holdout_features, make_bundle


@pytest.fixture
def bundle() -> InferenceBundle:
    return make_bundle()


@pytest.fixture
def features() -> pd.DataFrame:
    return holdout_features()


@pytest.fixture
def zoo() -> dict:
    return fitted_zoo()


def _by_runner(frame: pd.DataFrame, column: str) -> pd.Series:
    return frame.set_index(["race_id", "horse_id"])[column].sort_index()


def test_predict_reproduces_the_pipeline_holdout_predictions(bundle, features, zoo):
    out = bundle.predict(features)

    assert list(out.columns) == OUTPUT_COLUMNS
    assert out.index.equals(features.index)
    assert (out["race_id"].to_numpy() == features["race_id"].to_numpy()).all()
    assert (out["horse_id"].to_numpy() == features["horse_id"].to_numpy()).all()
    np.testing.assert_allclose(out.groupby("race_id")["p_fundamental"].sum(), 1.0, atol=1e-9)
    # the same numbers as model_zoo's predict_stacked_holdout / predict_blend_holdout, to
    # the last bit (the bundle runs their steps on arrays)
    expected = _by_runner(zoo["stacked_holdout"], "p")
    np.testing.assert_array_equal(_by_runner(out, "p_fundamental"), expected)
    has_market = out["p_market"].notna()
    assert has_market.any() and (~has_market).any()  # the small world has missing odds
    blended = _by_runner(zoo["blend_holdout"], "p")
    combined = _by_runner(out, "p_combined")
    market = _by_runner(out, "p_market").notna()
    np.testing.assert_array_equal(combined[market], blended[market])
    np.testing.assert_allclose(
        out[has_market].groupby("race_id")["p_combined"].sum(), 1.0, atol=1e-9
    )
    np.testing.assert_array_equal(out["p_market"], market_probability(features).to_numpy())


def test_predict_does_not_depend_on_row_order_or_mutate_its_input(bundle, features):
    before = features.copy()
    shuffled = features.sample(frac=1.0, random_state=0)
    a = bundle.predict(features)
    b = bundle.predict(shuffled)
    pd.testing.assert_frame_equal(features, before)
    assert b.index.equals(shuffled.index)
    pd.testing.assert_frame_equal(a.loc[shuffled.index], b)


def test_market_and_blend_are_nan_without_odds(bundle, features):
    full = bundle.predict(features)
    complete = full.loc[full["p_market"].notna(), "race_id"].unique()
    race = complete[0]

    no_odds = bundle.predict(features.drop(columns=["odds_final"]))
    assert no_odds["p_market"].isna().all() and no_odds["p_combined"].isna().all()
    np.testing.assert_allclose(no_odds["p_fundamental"], full["p_fundamental"], rtol=1e-12)

    one_missing = features.copy()
    one_missing.loc[one_missing.index[one_missing["race_id"] == race][0], "odds_final"] = np.nan
    partial = bundle.predict(one_missing)
    in_race = partial["race_id"] == race
    assert partial.loc[in_race, ["p_market", "p_combined"]].isna().all().all()
    others = ~in_race & full["p_market"].notna()
    np.testing.assert_allclose(partial.loc[others, "p_combined"], full.loc[others, "p_combined"])


def test_predict_accepts_json_like_input(bundle, features):
    """No off_time, object-typed keys and features with None (a decoded JSON request)."""
    race = features[features["race_id"] == features["race_id"].iloc[0]]
    expected = bundle.predict(race)
    loose = race.drop(columns=["off_time", "jockey_id", "trainer_id"]).astype(object)
    loose = loose.where(loose.notna(), None)
    out = bundle.predict(loose)
    np.testing.assert_allclose(out["p_fundamental"], expected["p_fundamental"], rtol=1e-12)
    np.testing.assert_allclose(out["p_combined"], expected["p_combined"], rtol=1e-12)


def test_predict_rejects_bad_input(bundle, features):
    with pytest.raises(KeyError, match="h_win_rate"):
        bundle.predict(features.drop(columns=["h_win_rate"]))
    with pytest.raises(ValueError, match="appears more than once"):
        bundle.predict(pd.concat([features.head(3), features.head(1)]))
    bad = features.head(5).astype({"rating": object})
    bad.loc[bad.index[0], "rating"] = "fast"
    with pytest.raises(ValueError, match="'rating' is not numeric"):
        bundle.predict(bad)
    with pytest.raises(ValueError, match="no rows"):
        bundle.predict(features.head(0))


def test_contributions_add_up_to_the_ranker_score(bundle, features):
    name, ranker = bundle.explainer()
    assert name == "lgbm_ranker"
    contrib = bundle.contributions(features)
    columns = [str(c) for c in ranker.feature_names_in_]
    assert list(contrib.columns) == ["race_id", "horse_id", *columns, BIAS_COLUMN]
    raw = ranker.decision_function(features[columns], features["race_id"])
    total = contrib[columns].sum(axis=1) + contrib[BIAS_COLUMN]
    np.testing.assert_allclose(total, raw, rtol=1e-9, atol=1e-9)
    assert contrib[columns].abs().to_numpy().max() > 0  # the ranker uses its features


def test_explain_returns_the_largest_contributions(bundle, features):
    race = features[features["race_id"] == features["race_id"].iloc[-1]]
    explained = bundle.explain(race, top_k=4)
    contrib = bundle.contributions(race)
    features_only = contrib.drop(columns=["race_id", "horse_id", BIAS_COLUMN])

    assert list(explained) == list(zip(race["race_id"], race["horse_id"], strict=True))
    for (race_id, horse_id), entries in explained.items():
        assert len(entries) == 4
        row = features_only[(contrib["race_id"] == race_id) & (contrib["horse_id"] == horse_id)]
        row = row.iloc[0]
        sizes = [abs(e["contribution"]) for e in entries]
        assert sizes == sorted(sizes, reverse=True)
        assert sizes[-1] >= row.abs().drop([e["feature"] for e in entries]).max()
        runner = race[(race["race_id"] == race_id) & (race["horse_id"] == horse_id)].iloc[0]
        for entry in entries:
            assert entry["contribution"] == pytest.approx(row[entry["feature"]])
            value = runner[entry["feature"]]
            assert entry["value"] == (None if pd.isna(value) else pytest.approx(float(value)))

    everything = bundle.explain(race, top_k=10_000)
    assert all(len(v) == features_only.shape[1] for v in everything.values())
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="top_k"):
            bundle.explain(race, top_k=bad)


def test_explain_needs_a_lightgbm_ranker(zoo):
    bundle = build_bundle(
        zoo["models"],
        zoo["stacker"],
        zoo["blend"],
        feature_service="combined_v1",
        trained_until="2024-01-01",
    )
    bundle.base_models.pop("lgbm_ranker")  # a zoo without a ranker (bypasses the checks)
    with pytest.raises(ValueError, match="LightGBM ranker"):
        bundle.explain(zoo["hold"].head(10))


def test_bundle_pickles_and_predicts_identically(bundle, features):
    restored = pickle.loads(pickle.dumps(bundle))
    assert isinstance(restored, InferenceBundle)
    assert restored.model_version == bundle.model_version == bundle.fingerprint
    assert restored.trained_until == bundle.trained_until
    pd.testing.assert_frame_equal(restored.predict(features), bundle.predict(features))


def test_bundle_metadata(bundle, zoo):
    assert bundle.feature_service == "combined_v1"
    assert set(bundle.base_models) == set(zoo["models"])
    assert bundle.trained_until == zoo["train"]["off_time"].max()
    assert bundle.trained_until < zoo["hold"]["off_time"].min()
    assert bundle.holdout_metrics["stacked"]["log_loss"] == 2.0
    assert len(bundle.fingerprint) == 12
    same = build_bundle(
        zoo["models"], zoo["stacker"], zoo["blend"], feature_service="x", trained_until="2024-01-01"
    )
    assert same.fingerprint == bundle.fingerprint


def test_build_bundle_checks_that_the_parts_fit(zoo):
    kwargs = {"feature_service": "combined_v1", "trained_until": "2024-01-01"}
    fewer = {k: v for k, v in zoo["models"].items() if k != "lgbm_classifier"}
    with pytest.raises(ValueError, match="p_lgbm_classifier"):
        build_bundle(fewer, zoo["stacker"], zoo["blend"], **kwargs)
    renamed = {**fewer, "other": zoo["models"]["lgbm_classifier"]}
    with pytest.raises(ValueError, match="exactly the stacker's base models"):
        build_bundle(renamed, zoo["stacker"], zoo["blend"], **kwargs)
    with pytest.raises(ValueError, match="not fundamental features"):
        build_bundle(
            zoo["models"],
            zoo["stacker"],
            zoo["blend"],
            fundamental_features=["rating"],
            **kwargs,
        )
    with pytest.raises(TypeError, match="CombinedTrack"):
        build_bundle(zoo["models"], zoo["stacker"], object(), **kwargs)
    with pytest.raises(ValueError, match="feature_service"):
        build_bundle(
            zoo["models"], zoo["stacker"], zoo["blend"], feature_service="", trained_until="2024"
        )


@pytest.mark.parametrize("choice", ["market_corrected", "benter", "residual"])
def test_bundle_scores_only_the_chosen_candidate_with_the_same_numbers(bundle, features, choice):
    """Serving computes the chosen candidate alone (``predict_combined``); its numbers are
    ``predict_candidates``' for every choice the decision rule can make."""
    import copy

    from racecast.features.market import market_probabilities

    chosen = copy.copy(bundle)
    chosen.blend = copy.copy(bundle.blend)
    chosen.blend.choice_ = choice
    assert chosen.blend.residual_ is not None  # the tiny zoo fits a residual booster
    out = chosen.predict(features)
    has = out["p_market"].notna().to_numpy()
    # the same inputs the bundle gives the blend, through predict_candidates
    rows = features[has].sort_values(["off_time", "race_id", "horse_id"], kind="mergesort")
    expected = chosen.blend.predict_candidates(
        _by_runner(chosen.predict(rows), "p_fundamental")
        .loc[list(zip(rows["race_id"], rows["horse_id"], strict=True))]
        .to_numpy(),
        market_probabilities(
            rows["odds_final"].to_numpy(float),
            pd.factorize(rows["race_id"])[0],
            rows["race_id"].nunique(),
        )[0],
        np.zeros(len(rows)) if "odds_capped" not in rows else rows["odds_capped"].to_numpy(float),
        rows[list(chosen.blend.residual_.feature_names_in_)].to_numpy(float, na_value=np.nan),
        rows["race_id"].to_numpy(),
    )
    served = _by_runner(out, "p_combined").loc[
        list(zip(rows["race_id"], rows["horse_id"], strict=True))
    ]
    np.testing.assert_array_equal(served.to_numpy(), expected[choice])
    np.testing.assert_array_equal(expected["combined"], expected[choice])


class _Counting:
    """A base model's ``predict_proba_array``, counted (the model itself answers)."""

    def __init__(self, model) -> None:
        self.model, self.calls = model, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return type(self.model).predict_proba_array(self.model, *args, **kwargs)


def _counted(bundle, monkeypatch) -> _Counting:
    """The bundle's first base model's calls, counted for this test only (the fitted
    models are shared between tests)."""
    model = next(iter(bundle.base_models.values()))
    counted = _Counting(model)
    monkeypatch.setitem(vars(model), "predict_proba_array", counted)  # removed afterwards
    return counted


def test_kept_predictions_are_the_same_numbers_and_only_for_the_same_rows(bundle, features, monkeypatch):
    from racecast.data.lru import Lru

    class Recording(Lru):
        """An LRU that also remembers the last value put in it."""

        def put(self, key, value) -> None:
            self.last = value
            super().put(key, value)

    counted = _counted(bundle, monkeypatch)
    kept = Recording(8)
    fresh = bundle.predict(features)
    assert counted.calls == 1 and len(kept) == 0
    # first time: computed and kept; again at new prices: the kept p_fundamental, the
    # market and the combined track of the new prices, every number as computed afresh
    assert_frame = pd.testing.assert_frame_equal
    assert_frame(bundle.predict(features, kept=kept), fresh)
    assert counted.calls == 2 and len(kept) == 1
    repriced = features.assign(odds_final=features["odds_final"] * 1.25 + 0.5)
    again = bundle.predict(repriced, kept=kept)
    assert counted.calls == 2  # the models did not run
    assert_frame(again, bundle.predict(repriced))
    assert not np.allclose(again["p_combined"].fillna(0), fresh["p_combined"].fillna(0))
    # another fundamental value, another race id or another grouping: computed again
    changed = features.copy()
    feature = bundle.fundamental_features[0]
    changed.loc[changed.index[0], feature] = changed[feature].iloc[0] + 1.0
    renamed = features.assign(race_id=features["race_id"] + "-b")
    first_race = features["race_id"].iloc[0]
    merged = features.assign(
        race_id=features["race_id"].where(features["race_id"] != first_race, features["race_id"].iloc[-1])
    )
    for other in (changed, renamed, merged):
        calls = counted.calls
        assert_frame(bundle.predict(other, kept=kept), bundle.predict(other))
        assert counted.calls == calls + 2
    # the kept arrays cannot be changed by a caller
    with pytest.raises(ValueError):
        kept.last[0] = 0.5


def test_kept_predictions_are_bounded_least_recently_used_first(bundle, features, monkeypatch):
    from racecast.data.lru import Lru

    kept = Lru(1)
    first = bundle.predict(features, kept=kept)
    other = features[features["race_id"] == features["race_id"].iloc[0]]
    bundle.predict(other, kept=kept)  # the only place goes to the newer rows
    assert len(kept) == 1
    counted = _counted(bundle, monkeypatch)
    pd.testing.assert_frame_equal(bundle.predict(features, kept=kept), first)
    assert counted.calls == 1  # the first rows had left: computed again
