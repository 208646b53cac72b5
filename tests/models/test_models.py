"""Behavioural tests of the model zoo on tiny synthetic races (see conftest.py)."""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Callable

import catboost
import httpx
import lightgbm
import numpy as np
import pandas as pd
import pytest
import torch
import xgboost
from scipy.optimize import check_grad
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from racecast.models import base
from racecast.models.base import group_layout, relevance_from_position, winner_weights
from racecast.models.factory import build_model
from racecast.models.linear import (
    ConditionalLogit,
    conditional_logit_loss,
    exploded_logit_loss,
    rank_stages,
)
from racecast.models.neural import RaceSetAttention, RaceSetNetwork, pad_races
from racecast.models.semantic import OpenAICompatibleProvider, SemanticScorer, TfidfProvider
from racecast.models.trees import CatBoostRankerModel, LGBMRankerModel, XGBRankerModel
from racecast.models.zoo import MODELS

from .conftest import BETA, FEATURES, make_races, split

# Small, fast configurations (seconds on 2 cores); defaults are meant for real data.
FAST: dict[str, Callable[[], base.RaceModel]] = {
    "ConditionalLogit": lambda: MODELS["ConditionalLogit"](),
    "LGBMRankerModel": lambda: MODELS["LGBMRankerModel"](n_estimators=60),
    "LGBMClassifierModel": lambda: MODELS["LGBMClassifierModel"](n_estimators=60),
    "CatBoostRankerModel": lambda: MODELS["CatBoostRankerModel"](iterations=60),
    "XGBRankerModel": lambda: MODELS["XGBRankerModel"](n_estimators=60),
    "TabNetModel": lambda: MODELS["TabNetModel"](max_epochs=10),
    "LogisticModel": lambda: MODELS["LogisticModel"](),
    "RandomForestModel": lambda: MODELS["RandomForestModel"](n_estimators=60),
    "RaceSetAttention": lambda: MODELS["RaceSetAttention"](max_epochs=40),
    "SemanticScorer": lambda: MODELS["SemanticScorer"](),
}
NAMES = list(FAST)
NO_IMPORTANCE = {"RaceSetAttention", "SemanticScorer"}

# Gain over the uniform per-race log loss (nats per race) every model must reach on the
# 80 held-out races. A model that learnt nothing scores at best 0 (uniform) and usually
# below it (noise); the true model reaches ~0.7 here and the weakest zoo member (the
# CatBoost ranker, whose raw scores are not on a logit scale) ~0.2, so 0.1 separates
# "learnt the signal" from "did not" with a wide margin on both sides.
MIN_GAIN = 0.1


def _uses_text(name: str) -> bool:
    return name == "SemanticScorer"


def race_log_loss(proba: np.ndarray, y: pd.Series, groups: pd.Series) -> float:
    """Mean per-race log loss of the winner(s) (dead heats split, as in training)."""
    layout = group_layout(groups)
    weights = winner_weights(y.to_numpy()[layout.order], layout)
    return float(-(weights * np.log(proba[layout.order])).sum() / weights.sum())


def public_learned(model: object) -> set[str]:
    return {a for a in vars(model) if a.endswith("_") and not a.startswith("_")}


@pytest.fixture(scope="session")
def fitted(train_frame: pd.DataFrame) -> Callable[[str], base.RaceModel]:
    """Fit each fast model once per session, on copies of the training data."""
    cache: dict[str, base.RaceModel] = {}

    def get(name: str) -> base.RaceModel:
        if name not in cache:
            X, y, groups = split(train_frame, with_text=_uses_text(name))
            model = FAST[name]()
            assert model.fit(X, y, groups) is model
            cache[name] = model
        return cache[name]

    return get


# --------------------------------------------------------------------- every model
@pytest.mark.parametrize("name", NAMES)
def test_learned_attributes_only_after_fit(name: str, fitted) -> None:
    fresh = FAST[name]()
    assert public_learned(fresh) == set()
    X, _, groups = split(make_races(3, seed=9), with_text=_uses_text(name))
    with pytest.raises(NotFittedError):
        fresh.predict_proba(X, groups)
    model = fitted(name)
    new = set(vars(model)) - set(vars(fresh))
    assert {"feature_names_in_", "n_features_in_"} <= new
    assert all(attr.endswith("_") for attr in new), sorted(new)
    expected = ["comment"] if _uses_text(name) else FEATURES
    assert list(model.feature_names_in_) == expected


@pytest.mark.parametrize("name", NAMES)
def test_get_params_round_trip(name: str) -> None:
    model = FAST[name]()
    params = model.get_params(deep=False)
    assert type(model)(**params).get_params(deep=False) == params
    assert clone(model).get_params(deep=False) == params
    key = next(iter(params))
    assert model.set_params(**{key: params[key]}) is model
    assert model.get_params(deep=False) == params


@pytest.mark.parametrize("name", NAMES)
def test_probabilities_sum_to_one_per_race(name: str, fitted, test_frame) -> None:
    X, _, groups = split(test_frame, with_text=_uses_text(name))
    proba = fitted(name).predict_proba(X, groups)
    assert proba.shape == (len(X),)
    assert ((proba > 0) & (proba < 1)).all()
    sums = pd.Series(proba).groupby(groups.to_numpy()).sum()
    np.testing.assert_allclose(sums.to_numpy(), 1.0, rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_predictions_invariant_to_row_order(name: str, fitted, test_frame) -> None:
    model = fitted(name)
    X, _, groups = split(test_frame, with_text=_uses_text(name))
    shuffled = test_frame.sample(frac=1.0, random_state=3)
    Xs, _, gs = split(shuffled, with_text=_uses_text(name))
    by_horse = pd.Series(model.predict_proba(X, groups), index=test_frame["horse_id"])
    shuffled_by_horse = pd.Series(model.predict_proba(Xs, gs), index=shuffled["horse_id"])
    # float32 networks sum attention terms in another order when runners move: 1e-6
    np.testing.assert_allclose(
        shuffled_by_horse.loc[by_horse.index].to_numpy(), by_horse.to_numpy(), rtol=0, atol=1e-6
    )
    scores = pd.Series(model.decision_function(Xs, gs), index=shuffled["horse_id"])
    np.testing.assert_allclose(
        scores.loc[by_horse.index].to_numpy(),
        model.decision_function(X, groups),
        rtol=1e-6,
        atol=1e-6,
    )


@pytest.mark.parametrize("name", NAMES)
def test_beats_uniform_log_loss_on_held_out_races(name: str, fitted, test_frame) -> None:
    X, y, groups = split(test_frame, with_text=_uses_text(name))
    model_loss = race_log_loss(fitted(name).predict_proba(X, groups), y, groups)
    uniform_loss = float(np.log(groups.value_counts()).mean())
    assert uniform_loss - model_loss > MIN_GAIN, (model_loss, uniform_loss)


@pytest.mark.parametrize("name", NAMES)
def test_fit_and_predict_do_not_mutate_inputs(name: str, fitted, train_frame, test_frame) -> None:
    fitted(name)
    pd.testing.assert_frame_equal(train_frame, make_races(150, seed=0, prefix="R"))
    X, y, groups = split(test_frame, with_text=_uses_text(name))
    before = (X.copy(), groups.copy())
    fitted(name).predict_proba(X, groups)
    pd.testing.assert_frame_equal(X, before[0])
    pd.testing.assert_series_equal(groups, before[1])


@pytest.mark.parametrize("name", NAMES)
def test_importance(name: str, fitted) -> None:
    model = fitted(name)
    if name in NO_IMPORTANCE:
        with pytest.raises(NotImplementedError, match=name):
            model.importance()
        return
    importance = model.importance()
    assert sorted(importance.index) == sorted(FEATURES)
    assert np.isfinite(importance).all() and (importance >= 0).all() and importance.sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_fitted_model_pickles(name: str, fitted, test_frame) -> None:
    model = fitted(name)  # Kedro stores fitted models with PickleDataset
    X, _, groups = split(test_frame, with_text=_uses_text(name))
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.predict_proba(X, groups), model.predict_proba(X, groups))


@pytest.mark.parametrize("name", [n for n in NAMES if not _uses_text(n)])
def test_feature_missing_only_at_prediction_time(name: str, fitted, test_frame) -> None:
    X, _, groups = split(test_frame)
    X = X.assign(x1=np.nan, x2=np.nan)  # x1, x2 were never missing in training
    proba = fitted(name).predict_proba(X, groups)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(pd.Series(proba).groupby(groups.to_numpy()).sum(), 1.0, atol=1e-9)


# ------------------------------------------------------------------ input checking
def test_input_errors_name_the_argument(train_frame) -> None:
    X, y, groups = split(train_frame)
    model = ConditionalLogit()
    with pytest.raises(TypeError, match="DataFrame"):
        model.fit(X.to_numpy(), y, groups)
    with pytest.raises(ValueError, match="y must be 0/1"):
        model.fit(X, y.replace(1, 2), groups)
    with pytest.raises(ValueError, match="y contains no winner"):
        model.fit(X, y * 0, groups)
    with pytest.raises(ValueError, match="groups must have the same index"):
        model.fit(X, y, groups.reset_index(drop=True).set_axis(groups.index[::-1]))
    with pytest.raises(ValueError, match="groups has 1 missing race ids"):
        model.fit(X, y, groups.where(groups.index != groups.index[0]))
    with pytest.raises(ValueError, match="non-numeric feature columns .*comment"):
        model.fit(split(train_frame, with_text=True)[0], y, groups)
    model.fit(X, y, groups)
    with pytest.raises(ValueError, match=r"lacks the feature columns \['x2'\]"):
        model.predict_proba(X.drop(columns="x2"), groups)


# ------------------------------------------------------------------- group sorting
def test_group_layout_makes_races_contiguous_and_stable() -> None:
    groups = pd.Series(["b", "a", "b", "c", "a", "b", "c"], index=[10, 11, 12, 13, 14, 15, 16])
    layout = group_layout(groups)
    sorted_groups = groups.to_numpy()[layout.order]
    assert list(sorted_groups) == ["b", "b", "b", "a", "a", "c", "c"]  # first appearance
    assert list(layout.order) == [0, 2, 5, 1, 4, 3, 6]  # stable within a race
    assert list(layout.codes) == [0, 0, 0, 1, 1, 2, 2]
    assert list(layout.sizes) == [3, 2, 2] and list(layout.starts) == [0, 3, 5]
    assert list(layout.race_ids) == ["b", "a", "c"]
    np.testing.assert_array_equal(sorted_groups[layout.inverse], groups.to_numpy())
    already = group_layout(pd.Series(["x", "x", "y"]))
    assert list(already.order) == [0, 1, 2]
    # an array (a request's race ids, no Series built) or a list: the same layout
    for other in (groups.to_numpy(dtype=object), groups.tolist(), groups.to_numpy(dtype=str)):
        same = group_layout(other)
        for field in ("order", "inverse", "codes", "sizes", "starts", "race_ids"):
            np.testing.assert_array_equal(getattr(same, field), getattr(layout, field))
    with pytest.raises(ValueError, match="empty"):
        group_layout(np.array([], dtype=object))


@pytest.mark.parametrize(
    ("model", "owner", "member", "attribute"),
    [
        (LGBMRankerModel(n_estimators=3), lightgbm.LGBMRanker, "fit", "group"),
        (XGBRankerModel(n_estimators=3), xgboost.XGBRanker, "fit", "qid"),
        (CatBoostRankerModel(iterations=3), catboost, "Pool", "group_id"),
    ],
    ids=["lightgbm", "xgboost", "catboost"],
)
def test_rankers_receive_contiguous_sorted_groups(
    model, owner, member: str, attribute: str, train_frame, monkeypatch
) -> None:
    frame = train_frame.sample(frac=1.0, random_state=5)  # races interleaved
    X, y, groups = split(frame)
    original = getattr(owner, member)
    seen: dict[str, object] = {}

    def spy(*args, **kwargs):
        seen.update(kwargs, args=args)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, member, spy)
    clone(model).fit(X, y, groups)
    layout = group_layout(groups)
    data = seen["args"][0] if owner is catboost else seen["args"][1]  # (self, X, y) for fit
    np.testing.assert_array_equal(data, X.to_numpy()[layout.order])  # rows sorted by race
    passed = np.asarray(seen[attribute])
    if attribute == "group":  # LightGBM takes the race sizes in row order
        np.testing.assert_array_equal(passed, layout.sizes)
        assert passed.sum() == len(X)
    else:
        assert (np.diff(passed) >= 0).all()  # non-decreasing: every race contiguous
        np.testing.assert_array_equal(passed, layout.codes)


def test_ranker_uses_relevance_from_positions(train_frame, test_frame) -> None:
    relevance = relevance_from_position(train_frame["position"])
    assert relevance[train_frame["position"] == 1].eq(3).all()
    assert relevance[train_frame["position"] >= 4].eq(0).all()
    X, y, groups = split(train_frame)
    graded = LGBMRankerModel(n_estimators=60).fit(X, y, groups, relevance=relevance)
    plain = LGBMRankerModel(n_estimators=60).fit(X, y, groups)
    Xt, yt, gt = split(test_frame)
    assert not np.allclose(graded.decision_function(Xt, gt), plain.decision_function(Xt, gt))
    uniform = float(np.log(gt.value_counts()).mean())
    assert uniform - race_log_loss(graded.predict_proba(Xt, gt), yt, gt) > MIN_GAIN
    with pytest.raises(ValueError, match="label_gain"):
        LGBMRankerModel(n_estimators=2).fit(X, y, groups, relevance=relevance * 20)
    with pytest.raises(ValueError, match="relevance must be non-negative"):
        LGBMRankerModel(n_estimators=2).fit(X, y, groups, relevance=relevance - 5)


def test_failed_fit_leaves_model_unfitted() -> None:
    X, y, groups = split(make_races(20, seed=6))
    model = LGBMRankerModel(n_estimators=3).fit(X, y, groups)
    model.set_params(model_params={"n_estimators": 5})  # clashes with the explicit one
    with pytest.raises(ValueError, match="model_params repeats"):
        model.fit(X, y, groups)
    assert public_learned(model) == set()
    with pytest.raises(NotFittedError):
        model.predict_proba(X, groups)


def test_model_params_pass_through_and_clash() -> None:
    frame = make_races(40, seed=4)
    X, y, groups = split(frame)
    model = LGBMRankerModel(n_estimators=5, model_params={"max_depth": 2}).fit(X, y, groups)
    assert model.booster_model_.get_params()["max_depth"] == 2
    with pytest.raises(ValueError, match=r"model_params repeats \['n_estimators'\]"):
        LGBMRankerModel(model_params={"n_estimators": 5}).fit(X, y, groups)


# ------------------------------------------------------------- conditional logit
def test_conditional_logit_recovers_beta_direction() -> None:
    frame = make_races(600, seed=2)
    X, y, groups = split(frame)
    model = ConditionalLogit(alpha=1e-4).fit(X, y, groups)
    beta = model.coef_[FEATURES].to_numpy()
    cosine = beta @ BETA / (np.linalg.norm(beta) * np.linalg.norm(BETA))
    # 600 races carry ~600 bits of winner information: the MLE is within a few % of BETA
    assert cosine > 0.9
    np.testing.assert_allclose(beta, BETA, atol=0.3)


def _random_races(rng: np.random.Generator):
    """20 races of 2-7 runners: groups, layout, a 4-column design, winners (a dead heat in race 0)."""
    groups = pd.Series(np.repeat(np.arange(20), rng.integers(2, 8, 20)))
    layout = group_layout(groups)
    Z = rng.normal(size=(len(groups), 4))
    y = np.zeros(len(groups), dtype=int)
    y[layout.starts] = 1
    y[layout.starts[0] + 1] = 1  # a dead heat
    return groups, layout, Z, y


def test_conditional_logit_gradient_is_exact() -> None:
    rng = np.random.default_rng(0)
    groups, layout, Z, y = _random_races(rng)
    y[layout.starts[1]] = 0  # a race without winner
    w = winner_weights(y, layout)
    assert w[layout.starts[0]] == w[layout.starts[0] + 1] == 0.5
    race_w = np.add.reduceat(w, layout.starts)[layout.codes]
    args = (Z, w, race_w, layout, 0.1)
    error = check_grad(
        lambda b: conditional_logit_loss(b, *args)[0],
        lambda b: conditional_logit_loss(b, *args)[1],
        rng.normal(size=4),
    )
    assert error < 1e-5  # finite differences with step 1.5e-8 are accurate to ~1e-7


def test_conditional_logit_fit_ignores_row_order(train_frame) -> None:
    X, y, groups = split(train_frame)
    shuffled = train_frame.sample(frac=1.0, random_state=1)
    a = ConditionalLogit().fit(X, y, groups)
    b = ConditionalLogit().fit(*split(shuffled))
    # same likelihood, different summation order: optimiser tolerance, not float eps
    np.testing.assert_allclose(a.coef_.to_numpy(), b.coef_.to_numpy(), atol=1e-4)


def test_rank_stages_follow_relevance_with_ties_and_depth() -> None:
    groups = pd.Series(["a"] * 5 + ["b"] * 4)
    layout = group_layout(groups)
    # race a: winner, then relevance 2, 2 (a dead heat for second), 1, 0
    # race b: a dead heat for first (both won), then relevance 1, 0, 0
    y = np.array([1, 0, 0, 0, 0, 1, 1, 0, 0])
    relevance = np.array([3, 2, 2, 1, 0, 3, 3, 1, 0])
    assert rank_stages(y, relevance, layout, 3).tolist() == [0, 1, 1, 2, -1, 0, 0, 1, -1]
    assert rank_stages(y, relevance, layout, 2).tolist() == [0, 1, 1, -1, -1, 0, 0, 1, -1]
    assert rank_stages(y, None, layout, 3).tolist() == [0, -1, -1, -1, -1, 0, 0, -1, -1]


def test_exploded_logit_one_stage_is_the_conditional_logit_and_gradient_is_exact() -> None:
    rng = np.random.default_rng(0)
    groups, layout, Z, y = _random_races(rng)
    beta = rng.normal(size=4)
    w = winner_weights(y, layout)
    race_w = np.add.reduceat(w, layout.starts)[layout.codes]
    one = exploded_logit_loss(beta, Z, rank_stages(y, None, layout, 1), layout, 0.1)
    reference = conditional_logit_loss(beta, Z, w, race_w, layout, 0.1)
    np.testing.assert_allclose(one[0], reference[0], rtol=1e-12)
    np.testing.assert_allclose(one[1], reference[1], rtol=1e-10, atol=1e-12)
    relevance = np.asarray(
        pd.Series(rng.random(len(groups))).groupby(layout.codes).rank(ascending=False)
    )
    relevance = np.where(y == 1, 9, np.clip(6 - relevance, 0, None)).astype(int)
    stage = rank_stages(y, relevance, layout, 4)
    assert stage.max() == 3
    args = (Z, stage, layout, 0.1)
    error = check_grad(
        lambda b: exploded_logit_loss(b, *args)[0],
        lambda b: exploded_logit_loss(b, *args)[1],
        beta,
    )
    assert error < 1e-5


def test_exploded_logit_uses_the_places_to_estimate_better() -> None:
    # Plackett-Luce finishing orders: every place is a draw from the same utilities, so
    # reading the first places must estimate BETA more closely than the winners alone.
    frame = make_races(150, seed=4)
    X, y, groups = split(frame)
    relevance = relevance_from_position(frame["position"], top=12)
    winners_only = ConditionalLogit(alpha=1e-4).fit(X, y, groups, relevance=relevance)
    exploded = ConditionalLogit(alpha=1e-4, rank_depth=12).fit(X, y, groups, relevance=relevance)
    plain = ConditionalLogit(alpha=1e-4).fit(X, y, groups)
    np.testing.assert_allclose(winners_only.coef_, plain.coef_)  # depth 1: relevance unused
    error_win = np.linalg.norm(winners_only.coef_[FEATURES].to_numpy() - BETA)
    error_exploded = np.linalg.norm(exploded.coef_[FEATURES].to_numpy() - BETA)
    assert error_exploded < 0.5 * error_win
    np.testing.assert_allclose(exploded.coef_[FEATURES].to_numpy(), BETA, atol=0.2)
    with pytest.raises(ValueError, match="rank_depth must be at least 1"):
        ConditionalLogit(rank_depth=0).fit(X, y, groups)


# --------------------------------------------------------------- set attention
def test_attention_network_is_permutation_equivariant_and_ignores_padding() -> None:
    torch.manual_seed(0)
    network = RaceSetNetwork(n_features=5, hidden_dim=16, n_heads=4, n_layers=2, dropout=0.0).eval()
    x = torch.randn(3, 7, 5)
    mask = torch.zeros(3, 7, dtype=torch.bool)
    mask[1, 5:] = True
    mask[2, 3:] = True
    with torch.no_grad():
        out = network(x, mask)
        perm = torch.tensor([4, 0, 6, 2, 1, 3, 5])  # moves real and padded slots alike
        permuted = network(x[:, perm], mask[:, perm])
        # one more padded slot full of garbage changes nothing for real runners
        x_more = torch.cat([x, 1e3 * torch.randn(3, 1, 5)], dim=1)
        mask_more = torch.cat([mask, torch.ones(3, 1, dtype=torch.bool)], dim=1)
        more = network(x_more, mask_more)
        # and garbage in existing padded slots neither
        x_junk = x.clone()
        x_junk[mask] = 1e3
        junk = network(x_junk, mask)
    real_perm = ~mask[:, perm]
    torch.testing.assert_close(permuted[real_perm], out[:, perm][real_perm], atol=1e-5, rtol=0)
    torch.testing.assert_close(more[:, :7][~mask], out[~mask], atol=1e-5, rtol=0)
    torch.testing.assert_close(junk[~mask], out[~mask], atol=1e-5, rtol=0)


def test_attention_model_padding_and_within_race_order(fitted, test_frame) -> None:
    model = fitted("RaceSetAttention")
    small_race = test_frame.groupby("race_id").size().idxmin()
    big_race = test_frame.groupby("race_id").size().idxmax()
    alone = test_frame[test_frame["race_id"] == small_race]
    together = test_frame[test_frame["race_id"].isin([small_race, big_race])]
    p_alone = model.predict_proba(*split(alone)[::2])
    p_together = model.predict_proba(*split(together)[::2])[
        together["race_id"].eq(small_race).to_numpy()
    ]
    np.testing.assert_allclose(p_together, p_alone, atol=1e-6)  # padding is invisible
    reversed_race = alone.iloc[::-1]
    p_reversed = model.predict_proba(*split(reversed_race)[::2])
    np.testing.assert_allclose(p_reversed[::-1], p_alone, atol=1e-6)  # equivariant
    assert 1 <= model.best_epoch_ <= model.n_epochs_ <= 40


def test_attention_bce_loss_threads_and_determinism(train_frame, test_frame) -> None:
    X, y, groups = split(train_frame)
    Xt, yt, gt = split(test_frame)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        a = RaceSetAttention(loss="bce", max_epochs=15, n_threads=1).fit(X, y, groups)
        assert torch.get_num_threads() == 2  # n_threads applies inside fit only
    finally:
        torch.set_num_threads(previous)
    b = RaceSetAttention(loss="bce", max_epochs=15, n_threads=1).fit(X, y, groups)
    np.testing.assert_array_equal(a.predict_proba(Xt, gt), b.predict_proba(Xt, gt))
    assert (a.decision_function(Xt, gt) < 0).all()  # bce scores are log P(won)
    uniform = float(np.log(gt.value_counts()).mean())
    assert uniform - race_log_loss(a.predict_proba(Xt, gt), yt, gt) > MIN_GAIN
    with pytest.raises(ValueError, match="loss must be one of"):
        RaceSetAttention(loss="hinge").fit(X, y, groups)


def test_pad_races_scatters_rows() -> None:
    layout = group_layout(pd.Series(["a", "a", "b", "b", "b"]))
    padded, mask = pad_races(np.arange(5.0), layout)
    np.testing.assert_array_equal(padded, [[0, 1, 0], [2, 3, 4]])
    np.testing.assert_array_equal(mask, [[False, False, True], [False, False, False]])


# -------------------------------------------------------------------- semantic
def test_semantic_scorer_neutral_score_and_text_only(fitted, test_frame) -> None:
    model = fitted("SemanticScorer")
    X, _, groups = split(test_frame, with_text=True)
    scores = model.decision_function(X, groups)
    no_text = X["comment"].isna().to_numpy()
    assert no_text.any()
    np.testing.assert_allclose(scores[no_text], model.neutral_score_)
    assert abs(model.neutral_score_) < 1e-8  # conditional-logit head: the average runner
    blank = X.assign(comment=["  "] * len(X))
    np.testing.assert_allclose(model.decision_function(blank, groups), model.neutral_score_)
    # numeric features are not used: scrambling them changes nothing
    scrambled = X.assign(x0=X["x0"].to_numpy()[::-1])
    np.testing.assert_array_equal(model.decision_function(scrambled, groups), scores)
    assert isinstance(model.provider_, TfidfProvider) and model.provider is None


def test_semantic_scorer_does_not_fit_the_configured_provider(train_frame) -> None:
    provider = TfidfProvider(n_components=4)
    model = SemanticScorer(provider=provider, head="logistic").fit(*split(train_frame, True))
    assert not hasattr(provider, "vectorizer_")
    assert model.provider_.get_params() == provider.get_params()
    assert model.embedding_dim_ == 4


def fake_embedding(text: str, dim: int = 8) -> list[float]:
    seed = int.from_bytes(text.encode()[:8].ljust(8, b"\0"), "little") + len(text)
    return np.random.default_rng(seed).normal(size=dim).tolist()


class FakeServer:
    """OpenAI-compatible /embeddings endpoint behind ``httpx.MockTransport``, counting calls.

    The transport wraps a plain closure: models clone their provider (deep-copying the
    transport), and a function survives a deep copy as itself, so the copy still
    reports to this server.
    """

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.headers: list[httpx.Headers] = []
        self.down = False

        def handler(request: httpx.Request) -> httpx.Response:
            if self.down:
                raise httpx.ConnectError("server down", request=request)
            assert request.url.path == "/v1/embeddings"
            body = json.loads(request.content)
            self.calls.append(body["input"])
            self.headers.append(request.headers)
            data = [
                {"index": i, "embedding": fake_embedding(t)} for i, t in enumerate(body["input"])
            ]
            return httpx.Response(200, json={"data": data, "model": body["model"]})

        self.transport = httpx.MockTransport(handler)


def test_openai_provider_caches_in_memory_and_on_disk(tmp_path, monkeypatch) -> None:
    server = FakeServer()
    monkeypatch.setenv("RACECAST_TEST_KEY", "secret")
    provider = OpenAICompatibleProvider(
        base_url="http://embeddings.test/v1",
        model="m",
        api_key_env="RACECAST_TEST_KEY",
        cache_dir=str(tmp_path),
        transport=server.transport,
    )
    texts = ["ran on well", "weakened", "ran on well"]
    first = provider.embed(texts)
    assert server.calls == [["ran on well", "weakened"]]  # duplicates requested once
    assert server.headers[0]["authorization"] == "Bearer secret"
    second = provider.embed(texts)
    assert len(server.calls) == 1  # all from the cache
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first[1], fake_embedding("weakened"))
    provider.embed(["weakened", "new text"])
    assert server.calls[-1] == ["new text"]
    # a new provider with the same cache_dir needs no request at all
    offline = FakeServer()
    offline.down = True
    again = OpenAICompatibleProvider(
        base_url="http://embeddings.test/v1",
        model="m",
        api_key_env=None,
        cache_dir=str(tmp_path),
        transport=offline.transport,
    )
    np.testing.assert_array_equal(again.embed(texts), first)
    assert offline.calls == []


def test_openai_provider_falls_back_on_connection_error(train_frame, test_frame, caplog) -> None:
    # nothing listens on the loopback discard port: the connection is refused at once
    provider = OpenAICompatibleProvider(
        base_url="http://127.0.0.1:9/v1", model="m", api_key_env=None, timeout=2.0
    )
    with caplog.at_level(logging.WARNING, logger="racecast.models.semantic"):
        model = SemanticScorer(provider=provider).fit(*split(train_frame, True))
    assert "unavailable during fit" in caplog.text
    assert model.provider_.mode_ == "fallback"
    X, _, groups = split(test_frame, with_text=True)
    offline = SemanticScorer().fit(*split(train_frame, True))
    # the fallback is the default offline provider: identical predictions
    np.testing.assert_allclose(model.predict_proba(X, groups), offline.predict_proba(X, groups))
    unfitted = OpenAICompatibleProvider(base_url="http://127.0.0.1:9/v1", model="m", timeout=2.0)
    with pytest.raises(RuntimeError, match="call fit"):
        unfitted.embed(["a"])


def test_openai_provider_bridges_to_fallback_when_server_dies(
    train_frame, test_frame, caplog
) -> None:
    server = FakeServer()
    provider = OpenAICompatibleProvider(
        base_url="http://embeddings.test/v1",
        model="m",
        api_key_env=None,
        transport=server.transport,
    )
    model = SemanticScorer(provider=provider).fit(*split(train_frame, True))
    assert model.provider_.mode_ == "remote" and model.embedding_dim_ == 8
    X, _, groups = split(test_frame, with_text=True)
    remote = model.predict_proba(X, groups)
    n_calls = len(server.calls)
    # 12 distinct phrases, requested once (one batch) during fit; prediction reuses them
    assert n_calls == 1 and len(server.calls[0]) == 12
    np.testing.assert_array_equal(model.predict_proba(X, groups), remote)
    assert len(server.calls) == n_calls  # served from the cache
    server.down = True
    model.provider_.cache_.clear()
    with caplog.at_level(logging.WARNING, logger="racecast.models.semantic"):
        degraded = model.predict_proba(X, groups)
    assert "offline fallback" in caplog.text and model.provider_.last_source_ == "fallback"
    assert degraded.shape == remote.shape
    np.testing.assert_allclose(pd.Series(degraded).groupby(groups.to_numpy()).sum(), 1.0)


# --------------------------------------------------------------------- factory
@pytest.mark.parametrize("name", NAMES)
def test_factory_builds_every_model(name: str) -> None:
    expected = FAST[name]()
    spec = {
        "module": "racecast.models.zoo",
        "class": name,
        "kwargs": expected.get_params(deep=False),
    }
    built = build_model(spec)
    assert type(built) is type(expected)
    assert built.get_params(deep=False) == expected.get_params(deep=False)


def test_factory_defaults_and_nested_provider_spec() -> None:
    model = build_model({"class": "LGBMRankerModel"})
    assert isinstance(model, LGBMRankerModel)
    scorer = build_model(
        {
            "class": "SemanticScorer",
            "kwargs": {
                "provider": {
                    "module": "racecast.models.semantic",
                    "class": "OpenAICompatibleProvider",
                    "kwargs": {"base_url": "http://127.0.0.1:9/v1", "model": "m"},
                }
            },
        }
    )
    assert isinstance(scorer.provider, OpenAICompatibleProvider)
    assert scorer.provider.base_url == "http://127.0.0.1:9/v1"
    assert scorer.get_params()["provider__model"] == "m"


def test_factory_errors_name_the_problem() -> None:
    with pytest.raises(ImportError, match="'racecast.models.nope'"):
        build_model({"module": "racecast.models.nope", "class": "X"})
    with pytest.raises(AttributeError, match="'LGBMRanker'.*LGBMRankerModel"):
        build_model({"class": "LGBMRanker"})
    with pytest.raises(TypeError, match=r"unknown kwargs \['num_trees'\].*model_params"):
        build_model({"class": "LGBMRankerModel", "kwargs": {"num_trees": 3}})
    with pytest.raises(ValueError, match=r"unknown keys \['params'\]"):
        build_model({"class": "LGBMRankerModel", "params": {}})
    with pytest.raises(ValueError, match="lacks the required key 'class'"):
        build_model({"kwargs": {}})
    with pytest.raises(TypeError, match="not a RaceModel"):
        build_model({"class": "TfidfProvider"})
