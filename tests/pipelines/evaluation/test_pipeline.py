"""The evaluation pipeline: its inputs per source, and the files its catalog entries write."""

from __future__ import annotations

import json

import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from racecast.pipelines.evaluation import create_pipeline
from tests.catalog_files import catalog_file
from tests.pipelines.evaluation.test_nodes import PARAMS, FakeBlend, make_holdout

FILES = {
    "evaluation_report": "evaluation.json",
    "evaluation_table": "evaluation.md",
    "evaluation_reliability_plot": "reliability.png",
    "evaluation_kelly_plot": "kelly.png",
    "evaluation_feature_importance_plot": "feature_importance.png",
}


@pytest.mark.parametrize("with_oracle", [True, False])
def test_oracle_input_only_when_asked(with_oracle):
    pipeline = create_pipeline(models=["lgbm_ranker"], with_oracle=with_oracle)
    assert ("oracle_win_probabilities" in pipeline.inputs()) is with_oracle
    assert {
        "model_zoo.holdout_set",
        "model_zoo.split_info",
        "model_zoo.lgbm_ranker.holdout_predictions",
        "model_zoo.stacked.holdout_predictions",
        "model_zoo.blend.holdout_predictions",
        "model_zoo.lgbm_ranker.model",
    } <= pipeline.inputs()
    assert set(FILES) | {"evaluation_metrics"} <= pipeline.all_outputs()


def test_catalog_entries_write_the_reports(tmp_path, holdout):
    hold, info, preds, oracle = holdout
    config = catalog_file("08_reporting_evaluation")
    assert (
        config["evaluation_metrics"]["type"]
        == "kedro_mlflow.io.metrics.MlflowMetricsHistoryDataset"
    )
    for name, filename in FILES.items():
        # an MLflow artifact of a `kedro run`; here (no run) the file only
        assert config[name]["type"] == "kedro_mlflow.io.artifacts.MlflowArtifactDataset"
        assert config[name]["artifact_path"] == "evaluation"
        config[name] = {**config[name]["dataset"], "filepath": str(tmp_path / filename)}
    config.pop("evaluation_metrics")

    class Model:
        def importance(self):
            import pandas as pd

            return pd.Series({"rating": 2.0, "h_best_fig": 1.0}, name="importance")

    catalog = DataCatalog.from_config(config)
    inputs = {
        "model_zoo.holdout_set": hold,
        "model_zoo.split_info": info,
        "model_zoo.blend.model": FakeBlend(),
        "model_zoo.stacked.model": Model(),
        "oracle_win_probabilities": oracle,
        "params:evaluation": PARAMS,
        "evaluation_metrics": None,
        **{f"model_zoo.{n}.holdout_predictions": p for n, p in preds.items()},
        # the serving subset's stack (here the full stack's predictions, one model kept)
        "model_zoo.serving_stacked.holdout_predictions": preds["stacked"],
        "model_zoo.serving_blend.holdout_predictions": preds["blend"],
        "model_zoo.serving_subset": {
            "models": ["uniform"],
            "dropped": [],
            "tolerance": 0.002,
            "reason": "serving subset disabled: every zoo model is served",
        },
    }
    for name, value in inputs.items():
        catalog[name] = MemoryDataset(value) if value is not None else MemoryDataset()
    pipeline = create_pipeline(models=["uniform"], with_oracle=True)
    SequentialRunner().run(pipeline, catalog)
    for filename in FILES.values():
        assert (tmp_path / filename).stat().st_size > 0
    report = json.loads((tmp_path / "evaluation.json").read_text())
    assert report["split"]["oracle"] is True
    assert "signal_recovered" in report["models"]["stacked"]
    assert (tmp_path / "evaluation.md").read_text().startswith("# Holdout evaluation")
    assert report["serving"]["models"] == ["uniform"]
    assert report["serving"]["serving_stacked_minus_stacked_log_loss"] == 0.0
    assert "## Serving bundle" in (tmp_path / "evaluation.md").read_text()


@pytest.fixture
def holdout():
    return make_holdout()
