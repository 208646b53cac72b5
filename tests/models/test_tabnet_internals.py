"""racecast.models.tabnet_internals: the lean TabNet fit is the library's fit, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_tabnet.tab_model import TabNetClassifier

from racecast.models.tabnet_internals import (
    LeanTabNetClassifier,
    tabnet_classifier,
    tabnet_supported,
)

PARAMS = {"n_d": 8, "n_a": 8, "n_steps": 3, "seed": 3, "verbose": 0, "device_name": "cpu"}


def _data(rows: int = 2_000, features: int = 12) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    X = rng.normal(size=(rows, features)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] + rng.normal(size=rows) > 1.2).astype(int)
    return X, y


def _fit(cls, X, y, drop_last: bool):
    torch.manual_seed(3)
    network = cls(**PARAMS)
    network.fit(
        X,
        y,
        max_epochs=3,
        batch_size=256,
        virtual_batch_size=64,
        drop_last=drop_last,
        pin_memory=False,
    )
    return network


@pytest.mark.parametrize("drop_last", [True, False])
def test_the_lean_fit_has_the_library_fits_weights_importances_and_probabilities(drop_last):
    X, y = _data()
    library = _fit(TabNetClassifier, X, y, drop_last)
    lean = _fit(LeanTabNetClassifier, X, y, drop_last)
    mine, theirs = lean.network.state_dict(), library.network.state_dict()
    assert mine.keys() == theirs.keys()
    for name in theirs:
        assert torch.equal(mine[name], theirs[name]), name
    np.testing.assert_array_equal(lean.feature_importances_, library.feature_importances_)
    np.testing.assert_array_equal(lean.predict_proba(X), library.predict_proba(X))


def test_the_random_stream_after_a_lean_fit_is_the_library_one():
    X, y = _data(600)
    _fit(TabNetClassifier, X, y, True)
    after_library = torch.rand(4)
    _fit(LeanTabNetClassifier, X, y, True)
    after_lean = torch.rand(4)
    assert torch.equal(after_library, after_lean)


def test_the_factory_gives_the_lean_class_on_the_supported_release():
    assert tabnet_supported()  # constraints.txt pins the release the internals are of
    assert type(tabnet_classifier(**PARAMS)) is LeanTabNetClassifier


def test_sample_weights_take_the_library_loader():
    X, y = _data(600)
    torch.manual_seed(3)
    network = LeanTabNetClassifier(**PARAMS)
    network.fit(X, y, max_epochs=1, batch_size=128, virtual_batch_size=64, weights=1)
    assert network.feature_importances_.shape == (X.shape[1],)
