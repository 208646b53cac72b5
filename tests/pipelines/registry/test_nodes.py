"""Node tests of the registry pipeline on the tiny fitted zoo of tests/serving."""

from __future__ import annotations

import json

import pytest

from racecast.inference import registry
from racecast.inference.bundle import InferenceBundle
from racecast.pipelines.registry import nodes
from tests.serving.tiny_zoo import evaluation_report, fitted_zoo, mlflow_sandbox

PARAMS = {"enabled": True, "model_name": "racecast-win-nodes"}


def _bundle(report=None) -> InferenceBundle:
    zoo = fitted_zoo()
    return nodes.build_inference_bundle(
        zoo["train"],
        report or evaluation_report(),
        zoo["stacker"],
        zoo["blend"],
        "combined_v1",
        0.0,
        **zoo["models"],
    )


def test_build_inference_bundle_takes_every_zoo_model():
    zoo = fitted_zoo()
    report = evaluation_report(2.05)
    bundle = _bundle(report)
    assert isinstance(bundle, InferenceBundle)
    assert set(bundle.base_models) == set(zoo["models"])
    assert bundle.stacker is zoo["stacker"] and bundle.blend is zoo["blend"]
    assert bundle.feature_service == "combined_v1"
    assert bundle.trained_until == zoo["train"]["off_time"].max()
    assert set(bundle.holdout_metrics) == {"stacked", "blend", "market"}  # not the base models
    assert bundle.holdout_metrics["stacked"]["log_loss"] == 2.05
    assert report["models"]["stacked"] == {"track": "fundamental", "log_loss": 2.05}  # untouched


def test_build_inference_bundle_rejects_an_empty_train_set():
    zoo = fitted_zoo()
    with pytest.raises(ValueError, match="model_zoo.train_set is empty"):
        nodes.build_inference_bundle(
            zoo["train"].head(0),
            evaluation_report(),
            zoo["stacker"],
            zoo["blend"],
            "x",
            0.0,
            **zoo["models"],
        )


def test_register_bundle_disabled_leaves_mlflow_alone(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("MLflow must not be called when the registry is disabled")

    monkeypatch.setattr(registry, "register_model", forbidden)
    bundle = _bundle()
    result = nodes.register_bundle(bundle, evaluation_report(2.0), {**PARAMS, "enabled": False})
    assert result["enabled"] is False and result["version"] is None
    assert result["promoted"] is False and result["aliases"] == []
    assert result["holdout_log_loss"] == 2.0 and result["reason"] == "registry.enabled is false"
    json.dumps(result)


def test_register_bundle_checks_its_inputs():
    bundle = _bundle()
    report = evaluation_report()
    report["models"]["stacked"]["log_loss"] = None
    with pytest.raises(ValueError, match="models.stacked.log_loss"):
        nodes.register_bundle(bundle, report, PARAMS)
    with pytest.raises(ValueError, match="models.stacked.log_loss"):
        nodes.register_bundle(bundle, {"models": {}}, PARAMS)
    with pytest.raises(ValueError, match="registry.model_name"):
        nodes.register_bundle(bundle, evaluation_report(), {"enabled": True, "model_name": ""})


def test_register_bundle_registers_and_promotes():
    bundle = _bundle()
    with mlflow_sandbox():
        first = nodes.register_bundle(bundle, evaluation_report(2.0), PARAMS)
        second = nodes.register_bundle(bundle, evaluation_report(2.3), PARAMS)
    assert first["enabled"] is True and first["promoted"] is True
    assert first["aliases"] == ["challenger", "champion"]
    assert second["promoted"] is False and second["aliases"] == ["challenger"]
    assert second["holdout_log_loss"] == 2.3 and second["champion_log_loss"] == 2.0
    assert second["fingerprint"] == bundle.fingerprint
    json.dumps(second)  # the registry_result dataset is JSON


@pytest.mark.parametrize("env", ["hkjc", "racecards"])
def test_each_data_env_registers_and_serves_its_own_model(env):
    """A holdout log loss only compares with one on the same data: one name per data env.

    The env overrides only those keys (soft merge): the rest of each block stays base.
    """
    from racecast.project import load_parameters

    base, other = load_parameters(None), load_parameters(env)
    assert base["registry"]["model_name"] == "racecast-win"
    assert other["registry"]["model_name"] == f"racecast-win-{env}"
    assert other["serving"]["bundle_uri"] == f"models:/racecast-win-{env}@champion"
    assert base["serving"]["bundle_uri"] == "models:/racecast-win@champion"
    for block in ("registry", "serving", "ingestion"):
        kept = set(base[block]) - {"model_name", "bundle_uri", "source"}
        assert {k: other[block][k] for k in kept} == {k: base[block][k] for k in kept}
    assert other["ingestion"]["source"] == env
