"""The lean prediction helpers equal the libraries' own methods, bit for bit.

``racecast.models.fastpath`` re-does scikit-learn's / LightGBM's / pytorch-tabnet's
prediction arithmetic without their per-call overheads, and every model predicts through
it (training and serving alike). These tests pin each helper to the library method it
replaces with exact equality, and ``RaceModel.predict_proba_array`` (the bundle's array
entry point) to ``predict_proba``.
"""

from __future__ import annotations

import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from racecast.models import base
from racecast.models.base import group_layout, make_impute_scale, make_imputer
from racecast.models.fastpath import (
    BoosterContributions,
    FlatForest,
    ObliviousTrees,
    booster_predict,
    decision_function,
    forest_proba,
    logistic_positive_proba,
    transform,
)
from racecast.models.neural import pad_races, tabnet_proba

from .conftest import split
from .test_models import NAMES, fitted  # noqa: F401 (the session fixture of fitted models)


def _rows(frame) -> tuple[np.ndarray, base.GroupLayout]:
    X, _, groups = split(frame)
    return X.to_numpy(dtype=np.float64), group_layout(groups)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "SemanticScorer"])
def test_predict_proba_array_equals_predict_proba(name, fitted, test_frame) -> None:  # noqa: F811
    model = fitted(name)
    X, y, groups = split(test_frame)
    shuffled = np.random.default_rng(1).permutation(len(X))
    X, groups = X.iloc[shuffled], groups.iloc[shuffled]
    expected = model.predict_proba(X, groups)
    got = model.predict_proba_array(X.to_numpy(dtype=np.float64), group_layout(groups))
    np.testing.assert_array_equal(got, expected)


def test_predict_proba_array_checks_shape_and_infinity(fitted, test_frame) -> None:  # noqa: F811
    model = fitted("LogisticModel")
    X, layout = _rows(test_frame)
    with pytest.raises(ValueError, match="shape"):
        model.predict_proba_array(X[:, :2], layout)
    X[3, 1] = np.inf
    with pytest.raises(ValueError, match="infinite values in columns \\['x1'\\]"):
        model.predict_proba_array(X, layout)


def _missing_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, transform rows): column 2 is empty in fit, column 1 only misses later."""
    rng = np.random.default_rng(seed)
    fit = rng.normal(size=(60, 4))
    fit[rng.random(60) < 0.2, 0] = np.nan
    fit[:, 2] = np.nan
    later = rng.normal(size=(15, 4))
    later[[0, 3, 7], 0] = np.nan
    later[[1, 3], 1] = np.nan
    later[[2, 5], 2] = np.nan
    return fit, later


@pytest.mark.parametrize(
    "make",
    [
        make_imputer,
        make_impute_scale,
        lambda: SimpleImputer(strategy="mean", add_indicator=True, keep_empty_features=True),
    ],
)
def test_transform_equals_scikit_learn(make) -> None:
    fit, later = _missing_data()
    step = make().fit(fit)
    np.testing.assert_array_equal(transform(step, later), step.transform(later))
    np.testing.assert_array_equal(transform(step, fit), step.transform(fit))


def test_transform_leaves_unknown_steps_to_their_library() -> None:
    fit, later = _missing_data()
    imputer = SimpleImputer(strategy="median", keep_empty_features=False).fit(fit)
    with pytest.warns(UserWarning, match="Skipping features"):
        expected = imputer.transform(later)
    with pytest.warns(UserWarning, match="Skipping features"):
        np.testing.assert_array_equal(transform(imputer, later), expected)


def test_logistic_helpers_equal_scikit_learn() -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 5))
    y = (X @ [1.0, -0.5, 0.2, 0.0, 0.7] + rng.normal(size=200) > 0).astype(int)
    centred = Pipeline(
        [
            ("center", StandardScaler(with_std=False)),
            ("logistic", LogisticRegression(C=0.1, l1_ratio=1.0, solver="liblinear")),
        ]
    ).fit(X, y)
    later = rng.normal(size=(14, 5))
    np.testing.assert_array_equal(
        decision_function(centred, later), centred.decision_function(later)
    )
    np.testing.assert_array_equal(
        logistic_positive_proba(centred, later), centred.predict_proba(later)[:, 1]
    )


def test_model_helpers_equal_their_libraries(fitted, test_frame) -> None:  # noqa: F811
    X, _ = _rows(test_frame)
    logistic = fitted("LogisticModel").pipeline_
    np.testing.assert_array_equal(
        logistic_positive_proba(logistic, X), logistic.predict_proba(X)[:, 1]
    )
    clogit = fitted("ConditionalLogit").preprocessor_
    np.testing.assert_array_equal(transform(clogit, X), clogit.transform(X))
    forest = fitted("RandomForestModel").pipeline_
    imputed = transform(forest.named_steps["impute"], X)
    np.testing.assert_array_equal(imputed, forest.named_steps["impute"].transform(X))
    trees = forest.named_steps["forest"]
    flat = FlatForest(trees)
    for walk in (None, lambda: flat):  # tree by tree, and every tree walked together
        np.testing.assert_array_equal(forest_proba(trees, imputed, walk), forest.predict_proba(X))
    ranker = fitted("LGBMRankerModel").booster_model_
    np.testing.assert_array_equal(booster_predict(ranker, X), ranker.predict(X))
    np.testing.assert_array_equal(
        booster_predict(ranker, X, pred_contrib=True), ranker.predict(X, pred_contrib=True)
    )
    classifier = fitted("LGBMClassifierModel").booster_model_
    np.testing.assert_array_equal(booster_predict(classifier, X), classifier.predict_proba(X)[:, 1])


def test_tabnet_and_attention_equal_the_library_forward_pass(fitted, test_frame) -> None:  # noqa: F811
    X, layout = _rows(test_frame)
    tabnet = fitted("TabNetModel")
    Z = tabnet.preprocessor_.transform(X).astype(np.float32)
    with base.torch_threads(1):
        np.testing.assert_array_equal(
            tabnet_proba(tabnet.network_, Z), tabnet.network_.predict_proba(Z)
        )
    attention = fitted("RaceSetAttention")
    Z = attention.preprocessor_.transform(X[layout.order]).astype(np.float32)
    x_pad, mask = pad_races(Z, layout)
    with base.torch_threads(1), torch.no_grad():
        logits = attention.network_(torch.from_numpy(x_pad), torch.from_numpy(mask)).numpy()
    np.testing.assert_array_equal(
        attention._score_sorted(X[layout.order], layout), logits[~mask].astype(np.float64)
    )


def test_forest_with_several_jobs_uses_scikit_learn(fitted, test_frame) -> None:  # noqa: F811
    X, _ = _rows(test_frame)
    forest = fitted("RandomForestModel").pipeline_
    imputed = transform(forest.named_steps["impute"], X)
    parallel = forest.named_steps["forest"].set_params(n_jobs=2)
    try:
        # scikit-learn's threads add the trees in any order: equal up to rounding
        np.testing.assert_allclose(
            forest_proba(parallel, imputed), parallel.predict_proba(imputed), rtol=1e-12
        )
    finally:
        parallel.set_params(n_jobs=1)


def test_forest_walk_follows_scikit_learn_for_missing_values_and_deep_trees() -> None:
    from sklearn.ensemble import RandomForestClassifier

    fit, later = _missing_data(5)
    fit[:, 2] = np.random.default_rng(6).normal(size=len(fit))  # no empty column here
    y = (np.nan_to_num(fit[:, 0]) + fit[:, 1] > 0).astype(int)
    forest = RandomForestClassifier(n_estimators=25, min_samples_leaf=1, random_state=0)
    forest.fit(fit, y)  # scikit-learn trees learn where missing values go
    flat = FlatForest(forest)
    for rows in (later, fit):
        np.testing.assert_array_equal(
            forest_proba(forest, rows, lambda: flat), forest.predict_proba(rows)
        )


def test_forest_goes_tree_by_tree_for_many_rows(monkeypatch, fitted, test_frame) -> None:  # noqa: F811
    from racecast.models import fastpath

    X, _ = _rows(test_frame)
    forest = fitted("RandomForestModel").pipeline_
    imputed = transform(forest.named_steps["impute"], X)
    flat = FlatForest(forest.named_steps["forest"])
    built = []
    walked = forest_proba(forest.named_steps["forest"], imputed, lambda: built.append(1) or flat)
    assert built == [1]
    monkeypatch.setattr(fastpath, "FLAT_WALK_MAX_CELLS", 0)
    by_tree = forest_proba(forest.named_steps["forest"], imputed, lambda: built.append(1) or flat)
    assert built == [1], "many rows never build the flat forest"
    np.testing.assert_array_equal(by_tree, walked)
    np.testing.assert_array_equal(by_tree, forest.predict_proba(X))


def test_random_forest_keeps_its_flat_forest_but_never_pickles_it(fitted, test_frame) -> None:  # noqa: F811
    model = fitted("RandomForestModel")
    X, layout = _rows(test_frame)
    expected = model.predict_proba_array(X[:14], group_layout(np.zeros(14)))
    flat = model._flat_forest()
    assert model._flat_forest() is flat  # built once per fitted forest
    copy = pickle.loads(pickle.dumps(model))
    assert "_flat" not in copy.__dict__
    np.testing.assert_array_equal(
        copy.predict_proba_array(X[:14], group_layout(np.zeros(14))), expected
    )


def test_large_batches_keep_the_libraries_threading(monkeypatch, fitted, test_frame) -> None:  # noqa: F811
    from racecast.models import fastpath

    X, layout = _rows(test_frame)
    ranker = fitted("LGBMRankerModel").booster_model_
    classifier = fitted("LGBMClassifierModel").booster_model_
    catboost = fitted("CatBoostRankerModel")
    small = (
        booster_predict(ranker, X),
        booster_predict(ranker, X, pred_contrib=True),
        booster_predict(classifier, X),
        catboost.predict_proba_array(X, layout),
    )
    monkeypatch.setattr(fastpath, "SMALL_BATCH_ROWS", 0)
    large = (
        booster_predict(ranker, X),
        booster_predict(ranker, X, pred_contrib=True),
        booster_predict(classifier, X),
        catboost.predict_proba_array(X, layout),
    )
    for got, expected in zip(large, small, strict=True):
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(large[2], classifier.predict_proba(X)[:, 1])


def test_contributions_run_beside_predictions_on_a_private_booster(fitted, test_frame) -> None:  # noqa: F811
    """pred_contrib concurrent with predict on one Booster corrupts LightGBM's heap
    (lightgbm-org/LightGBM#5482); the service does both at once, so contributions come
    from a private copy: the same numbers, hammered from threads without a crash."""
    X, _ = _rows(test_frame)
    ranker = fitted("LGBMRankerModel").booster_model_
    expected = ranker.predict(X, pred_contrib=True)
    contributions = BoosterContributions(ranker)
    np.testing.assert_array_equal(contributions(X), expected)
    scores = ranker.predict(X)

    def explain(_: int) -> np.ndarray:
        return contributions(X[:14])

    def predict(_: int) -> np.ndarray:
        return booster_predict(ranker, X[:14])

    with ThreadPoolExecutor(max_workers=8) as pool:
        explained = [pool.submit(explain, i) for i in range(200)]
        predicted = [pool.submit(predict, i) for i in range(200)]
        for future in explained:
            np.testing.assert_array_equal(future.result(), expected[:14])
        for future in predicted:
            np.testing.assert_array_equal(future.result(), scores[:14])


def test_isotonic_predict_equals_scikit_learn() -> None:
    from sklearn.isotonic import IsotonicRegression

    from racecast.models.fastpath import isotonic_predict

    rng = np.random.default_rng(3)
    score = rng.normal(size=400)
    y = (score + rng.normal(size=400) > 0).astype(float)
    later = np.concatenate([rng.normal(scale=2.0, size=50), [score.min(), score.max(), -9.0, 9.0]])
    for bounds in ("clip", "nan"):
        iso = IsotonicRegression(out_of_bounds=bounds, y_min=0.0, y_max=1.0).fit(score, y)
        got = isotonic_predict(iso, later)
        np.testing.assert_array_equal(got, iso.predict(later))
        assert got.dtype == iso.predict(later).dtype
    with pytest.raises(ValueError):  # a missing score: the library's own check
        isotonic_predict(iso, np.array([0.1, np.nan]))


def test_catboost_scores_a_race_as_its_library_does(fitted, test_frame) -> None:  # noqa: F811
    model = fitted("CatBoostRankerModel")
    X, layout = _rows(test_frame)
    race = X[layout.order][:14]
    np.testing.assert_array_equal(
        model._score_sorted(race, group_layout(np.zeros(14))),
        model.booster_model_.predict(race),  # float64 rows, the library's own conversion
    )


def _catboost_rows(trees: ObliviousTrees, n: int, seed: int) -> np.ndarray:
    """Random rows with missing values and values exactly on the trees' borders."""
    rng = np.random.default_rng(seed)
    X = rng.normal(scale=2.0, size=(n, trees.n_features))
    finite = np.isfinite(trees.border[:, 0])
    for k in rng.choice(np.flatnonzero(finite), size=min(n, int(finite.sum())), replace=False):
        X[rng.integers(n), trees.feature[k]] = trees.border[k, 0]  # on a border (float32)
    X[rng.random(X.shape) < 0.15] = np.nan
    return X


@pytest.mark.parametrize("nan_mode", ["Min", "Max"])
def test_oblivious_trees_equal_catboost_predict(nan_mode: str) -> None:
    """The numpy trees give CatBoost's raw scores bit for bit: float64 and float32 rows,
    missing values under either nan_mode (AsFalse / AsTrue), values on a border, trees
    of unequal depth, a race and batches cut into chunks."""
    from catboost import CatBoostRanker, Pool

    rng = np.random.default_rng(5)
    X = rng.normal(size=(600, 6))
    X[rng.random(X.shape) < 0.2] = np.nan
    groups = np.repeat(np.arange(60), 10)
    y = (np.nan_to_num(X[:, 0]) + rng.normal(size=600) > 1).astype(float)
    model = CatBoostRanker(
        iterations=40,
        depth=5,
        nan_mode=nan_mode,
        random_seed=0,
        verbose=False,
        allow_writing_files=False,
        thread_count=1,
    ).fit(Pool(X, label=y, group_id=groups))
    trees = ObliviousTrees.of(model)
    assert trees is not None
    assert trees.nan_true.any() == (nan_mode == "Max")
    rows = _catboost_rows(trees, 3000, seed=6)
    expected = model.predict(rows)
    np.testing.assert_array_equal(trees(rows), expected)
    np.testing.assert_array_equal(trees(rows, max_rows=128), expected)
    np.testing.assert_array_equal(trees(rows[:14]), model.predict(rows[:14]))
    np.testing.assert_array_equal(
        trees(rows.astype(np.float32)), model.predict(rows.astype(np.float32))
    )
    with pytest.raises(ValueError, match="feature columns"):
        trees(rows[:, :3])


def test_catboost_ranker_scores_through_its_trees(fitted, test_frame) -> None:  # noqa: F811
    model = fitted("CatBoostRankerModel")
    X, layout = _rows(test_frame)
    trees = model._oblivious_trees()
    assert trees is not None and model._oblivious_trees() is trees  # built once
    np.testing.assert_array_equal(model._score_sorted(X, layout), model.booster_model_.predict(X))
    copy = pickle.loads(pickle.dumps(model))
    assert "_trees" not in copy.__dict__
    np.testing.assert_array_equal(
        copy.predict_proba_array(X, layout), model.predict_proba_array(X, layout)
    )


def test_models_the_trees_do_not_reproduce_keep_catboost() -> None:
    from catboost import CatBoostRegressor

    rng = np.random.default_rng(2)
    X = rng.normal(size=(200, 3))
    y = X[:, 0] + rng.normal(size=200)
    depthwise = CatBoostRegressor(
        iterations=5, grow_policy="Depthwise", verbose=False, allow_writing_files=False
    ).fit(X, y)
    assert ObliviousTrees.of(depthwise) is None
    import pandas as pd

    frame = pd.DataFrame({"a": X[:, 0], "c": rng.choice(["x", "y"], 200)})
    categorical = CatBoostRegressor(iterations=5, verbose=False, allow_writing_files=False)
    assert ObliviousTrees.of(categorical.fit(frame, y, cat_features=["c"])) is None


def test_race_codes_of_a_few_ids_equal_pandas_factorize() -> None:
    import pandas as pd

    from racecast.data.races import race_code_array, race_codes

    cases = [
        np.array(["R2", "R1", "R2", "R3", "R1"], dtype=object),
        np.array(["R1"], dtype=object),
        np.array(["R1", None, "R2"], dtype=object),  # missing: pandas' error
        np.array(["R1", 7, "R1"], dtype=object),  # not text: pandas decides
        pd.Series(["b", "a", "b"]),  # not an object array: pandas' factorize
        np.array([f"R{i % 300}" for i in range(600)], dtype=object),  # beyond the small path
    ]
    for ids in cases:
        try:
            expected_codes, expected_races = pd.factorize(ids, use_na_sentinel=True)
            assert (expected_codes >= 0).all()
        except AssertionError:
            for code in (race_codes, race_code_array):
                with pytest.raises(ValueError, match="missing race ids"):
                    code(ids)
            continue
        codes, races = race_codes(ids)
        np.testing.assert_array_equal(codes, expected_codes)
        assert codes.dtype == np.int64
        pd.testing.assert_index_equal(races, pd.Index(expected_races))
        only = race_code_array(ids)  # the codes without the races' Index: the same codes
        assert only.dtype == np.int64 and only.tobytes() == codes.tobytes()
