"""Run the registry pipeline in memory with Kedro's runner on the tiny fitted zoo."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from racecast.inference.registry import load_bundle
from racecast.pipelines.model_zoo import ZOO_MODELS
from racecast.pipelines.registry import create_pipeline
from tests.pipelines.model_zoo.test_pipeline import KeptDataset
from tests.serving.tiny_zoo import (
    evaluation_report,
    fitted_zoo,
    holdout_features,
    mlflow_sandbox,
    serving_zoo,
)


def test_default_pipeline_shape():
    pipeline = create_pipeline()
    assert {n.name for n in pipeline.nodes} == {
        "registry.build_inference_bundle",
        "registry.register_bundle",
    }
    assert {f"model_zoo.{m}.model" for m in ZOO_MODELS} <= pipeline.inputs()
    assert {
        "model_zoo.train_set",
        "model_zoo.serving_stacked.model",
        "model_zoo.serving_blend.model",
        "model_zoo.serving_subset",
        "evaluation_report",
        "params:features.training_service",
        "params:registry",
        "params:registry.skip_max_weight",
    } <= pipeline.inputs()
    assert pipeline.outputs() == {"registry_result"}
    assert "inference_bundle" in pipeline.all_outputs()
    with pytest.raises(ValueError, match="clash"):
        create_pipeline(models=["blend"])
    with pytest.raises(ValueError, match="at least one"):
        create_pipeline(models=[])


def test_registry_pipeline_runs_in_memory():
    zoo, sub = fitted_zoo(), serving_zoo()
    pipeline = create_pipeline(models=list(zoo["models"]))
    report = evaluation_report(2.1)
    report["models"]["serving_stacked"] = {"track": "fundamental", "log_loss": 2.0}
    inputs = {
        "model_zoo.train_set": zoo["train"],
        "model_zoo.serving_stacked.model": sub["stacker"],
        "model_zoo.serving_blend.model": sub["blend"],
        "model_zoo.serving_subset": sub["subset"],
        "evaluation_report": report,
        "params:features.training_service": "combined_v1",
        "params:registry": {"enabled": True, "model_name": "racecast-win-pipeline"},
        "params:registry.skip_max_weight": 0.0,
        **{f"model_zoo.{name}.model": model for name, model in zoo["models"].items()},
    }
    catalog = DataCatalog(
        {
            **{name: MemoryDataset(value, copy_mode="assign") for name, value in inputs.items()},
            **{name: KeptDataset(copy_mode="assign") for name in pipeline.all_outputs()},
        }
    )
    with mlflow_sandbox():
        SequentialRunner().run(pipeline, catalog)
        result = catalog.load("registry_result")
        champion = load_bundle("models:/racecast-win-pipeline@champion")

    assert result["version"] == "1" and result["promoted"] is True
    assert result["aliases"] == ["challenger", "champion"]
    assert result["holdout_log_loss"] == 2.0 and result["champion_log_loss"] is None
    bundle = catalog.load("inference_bundle")
    assert champion.fingerprint == bundle.fingerprint == result["fingerprint"]
    features = holdout_features()
    expected = bundle.predict(features)
    pd.testing.assert_frame_equal(champion.predict(features), expected)
    # the served stack is the subset's: its evaluated holdout predictions, promoted on
    # its own holdout log loss (serving_stacked), the ranker kept for explanations
    assert sorted(bundle.base_models) == sub["subset"]["models"]
    assert bundle.explainer()[0] == "lgbm_ranker"
    stacked = sub["stacked_holdout"].set_index(["race_id", "horse_id"])["p"]
    got = expected.set_index(["race_id", "horse_id"])["p_fundamental"]
    np.testing.assert_allclose(got.sort_index(), stacked.sort_index(), rtol=1e-12)
