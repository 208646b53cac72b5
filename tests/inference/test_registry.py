"""MLflow registry of the inference bundle: challenger / champion, loading back."""

from __future__ import annotations

import pickle

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from racecast.inference import registry
from tests.serving.tiny_zoo import holdout_features, make_bundle, mlflow_sandbox


@pytest.fixture(scope="module")
def sandbox():
    with mlflow_sandbox() as experiment_id:
        yield experiment_id


@pytest.fixture(scope="module")
def module_bundle():
    return make_bundle()


def _champion(name: str) -> str | None:
    aliases = mlflow.MlflowClient().get_registered_model(name).aliases
    return None if registry.CHAMPION not in aliases else str(aliases[registry.CHAMPION])


def test_champion_only_moves_to_a_lower_holdout_log_loss(sandbox, module_bundle):
    name = "racecast-win-promotion"
    client = mlflow.MlflowClient()
    with mlflow.start_run(experiment_id=sandbox):  # as kedro-mlflow opens it
        first = registry.register_model(module_bundle, 2.0, model_name=name)
        worse = registry.register_model(module_bundle, 2.1, model_name=name)
        tie = registry.register_model(module_bundle, 2.0, model_name=name)
        better = registry.register_model(module_bundle, 1.9, model_name=name)
        run_id = mlflow.active_run().info.run_id

    assert first["version"] == "1" and first["promoted"] is True
    assert first["aliases"] == ["challenger", "champion"]
    assert first["champion_version"] is None and first["champion_log_loss"] is None

    assert worse["promoted"] is False and worse["aliases"] == ["challenger"]
    assert worse["champion_version"] == "1" and worse["champion_log_loss"] == 2.0
    assert tie["promoted"] is False  # strictly lower only
    assert better["promoted"] is True and better["aliases"] == ["challenger", "champion"]
    assert better["champion_version"] == "1" and better["champion_log_loss"] == 2.0

    assert _champion(name) == better["version"] == "4"
    assert str(client.get_model_version_by_alias(name, "challenger").version) == "4"
    assert client.get_model_version(name, "1").aliases == []
    tags = client.get_model_version(name, "2").tags
    assert float(tags[registry.LOG_LOSS_TAG]) == 2.1
    assert tags["feature_service"] == "combined_v1"
    assert tags["fingerprint"] == module_bundle.fingerprint
    assert tags["base_models"] == "lgbm_classifier,lgbm_ranker"
    assert {r["run_id"] for r in (first, worse, tie, better)} == {run_id}


def test_load_bundle_from_the_registry_predicts_identically(sandbox, module_bundle, tmp_path):
    name = "racecast-win-load"
    with mlflow.start_run(experiment_id=sandbox):
        registry.register_model(module_bundle, 2.0, model_name=name)
        registry.register_model(module_bundle, 2.5, model_name=name)
    features = holdout_features()
    expected = module_bundle.predict(features)

    champion = registry.load_bundle(f"models:/{name}@champion")
    assert champion.model_version == f"{name}/1"
    assert champion.fingerprint == module_bundle.fingerprint
    pd.testing.assert_frame_equal(champion.predict(features), expected)
    assert registry.load_bundle(f"models:/{name}/2").model_version == f"{name}/2"
    assert registry.load_bundle(f"models:/{name}@challenger").model_version == f"{name}/2"

    # the pyfunc flavour gives the same probabilities (schema drops the extra columns)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    out = pyfunc.predict(features)
    np.testing.assert_allclose(out["p_fundamental"], expected["p_fundamental"], rtol=1e-12)
    np.testing.assert_allclose(out["p_combined"], expected["p_combined"], rtol=1e-12)

    # a pickle file loads too
    path = tmp_path / "bundle.pkl"
    path.write_bytes(pickle.dumps(module_bundle))
    from_file = registry.load_bundle(path)
    assert from_file.model_version == module_bundle.model_version
    pd.testing.assert_frame_equal(from_file.predict(features), expected)


def test_registration_outside_a_run_starts_and_ends_its_own(sandbox, module_bundle):
    assert mlflow.active_run() is None
    result = registry.register_model(module_bundle, 2.0, model_name="racecast-win-no-run")
    assert mlflow.active_run() is None
    run = mlflow.MlflowClient().get_run(result["run_id"])
    assert run.info.experiment_id == sandbox and run.info.status == "FINISHED"


def test_a_champion_without_a_log_loss_is_kept(sandbox, module_bundle):
    name = "racecast-win-untagged"
    client = mlflow.MlflowClient()
    registry.register_model(module_bundle, 2.0, model_name=name)
    client.delete_model_version_tag(name, "1", registry.LOG_LOSS_TAG)
    result = registry.register_model(module_bundle, 0.5, model_name=name)
    assert result["promoted"] is False and result["champion_log_loss"] is None
    assert _champion(name) == "1"


def test_register_rejects_a_missing_log_loss(sandbox, module_bundle):
    for bad in (float("nan"), None, "x", float("inf")):
        with pytest.raises(ValueError, match="holdout_log_loss"):
            registry.register_model(module_bundle, bad, model_name="racecast-win-bad")


def test_load_bundle_errors(sandbox, tmp_path):
    with pytest.raises(ValueError, match="models:/<name>@<alias>"):
        registry.load_bundle("models:/racecast-win@champion/extra")
    with pytest.raises(FileNotFoundError, match="no inference bundle"):
        registry.load_bundle(tmp_path / "missing.pkl")
    other = tmp_path / "other.pkl"
    other.write_bytes(pickle.dumps({"not": "a bundle"}))
    with pytest.raises(TypeError, match="not an InferenceBundle"):
        registry.load_bundle(other)
    with pytest.raises(MlflowException):
        registry.load_bundle("models:/racecast-win-never-registered@champion")


def test_signature_lists_the_bundle_inputs(module_bundle):
    signature = registry.bundle_signature(module_bundle)
    names = signature.inputs.input_names()
    assert names[:2] == ["race_id", "horse_id"]
    assert names[2:-1] == module_bundle.fundamental_features and names[-1] == "odds_final"
    optional = [c.name for c in signature.inputs.inputs if not c.required]
    assert optional == ["odds_final"]
    assert signature.outputs.input_names() == [
        "race_id",
        "horse_id",
        "p_fundamental",
        "p_market",
        "p_combined",
    ]
