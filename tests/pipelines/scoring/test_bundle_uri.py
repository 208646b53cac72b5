"""With ``scoring.bundle_uri`` set, scoring never reads ``data/06_models/inference_bundle.pkl``.

``inference_bundle`` is a ``LazyPickleDataset`` (conf/base/catalog/06_models_bundle.yml):
Kedro hands the nodes a loader, which ``select_bundle`` calls only when the run's own
bundle is wanted. The Kedro run below uses the project's catalog entry, with no pickle at
its path: it completes when the bundle comes from ``scoring.bundle_uri``.
"""

from __future__ import annotations

import pickle

import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from racecast.data.datasets import LazyPickleDataset, loaded
from racecast.pipelines.scoring import nodes
from tests.catalog_files import catalog_file
from tests.pipelines.scoring import test_pipeline as scoring_run
from tests.pipelines.scoring.test_pipeline import bundle, project  # noqa: F401 (fixtures)
from tests.serving.serving_fakes import FakeBundle


def _never_called():
    raise AssertionError("the run's own bundle was read")


def test_select_bundle_reads_the_runs_bundle_only_when_no_uri_is_set(tmp_path):
    fake = FakeBundle()
    path = tmp_path / "other.pkl"
    from tests.serving.tiny_zoo import make_bundle

    other = make_bundle()
    path.write_bytes(pickle.dumps(other))

    chosen = nodes.select_bundle(_never_called, {"bundle_uri": str(path)})
    assert chosen.fingerprint == other.fingerprint
    calls = []
    assert nodes.select_bundle(lambda: calls.append(1) or fake, {"bundle_uri": None}) is fake
    assert calls == [1]
    assert nodes.select_bundle(fake, {"bundle_uri": None}) is fake  # in-memory runs
    assert loaded(5) == 5 and loaded(lambda: 6) == 6


def test_the_catalog_entry_is_lazy(tmp_path):
    entry = catalog_file("06_models_bundle")["inference_bundle"]
    assert entry["type"] == "racecast.data.datasets.LazyPickleDataset"
    dataset = LazyPickleDataset(filepath=str(tmp_path / "inference_bundle.pkl"))

    loader = dataset.load()  # no file yet: nothing is read

    dataset.save({"a": 1})
    assert loader() == {"a": 1} and dataset.load()() == {"a": 1}


def test_a_kedro_run_with_bundle_uri_needs_no_bundle_pickle(project, bundle):  # noqa: F811
    racecards, days = scoring_run._world()
    history, day = days[:-2], days[-2]
    raw = project / "data" / "01_raw" / "racecards" / "synthetic"
    raw.mkdir(parents=True)
    for each in history:
        for kind in ("racecard", "results"):
            (raw / f"{each}.{kind}.json").write_text(racecards[f"{each}.{kind}"])
    upcoming = project / "data" / "01_raw" / "upcoming"
    upcoming.mkdir(parents=True)
    (upcoming / f"{day}.racecard.json").write_text(racecards[f"{day}.racecard"])
    elsewhere = project / "models" / "champion.pkl"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(pickle.dumps(bundle))
    config = {**scoring_run._catalog_config(), **catalog_file("06_models_bundle")}
    catalog = DataCatalog.from_config(config)
    for name, value in scoring_run._parameters().items():
        catalog[name] = MemoryDataset(value)
    scoring = {**scoring_run._parameters()["params:scoring"], "bundle_uri": str(elsewhere)}
    catalog["params:scoring"] = MemoryDataset(scoring)
    pickled = project / "data" / "06_models" / "inference_bundle.pkl"
    assert not pickled.exists()

    SequentialRunner().run(scoring_run._pipeline(), catalog)

    assert not pickled.exists()
    predictions = catalog.load("scoring_predictions")
    assert predictions["model_version"] == bundle.model_version
    assert len(predictions["races"]) == len(set(scoring_run._day_rows(day)["race_id"]))


@pytest.mark.parametrize("uri", [None, ""])
def test_without_bundle_uri_a_missing_pickle_fails_the_run_naming_it(tmp_path, uri):
    dataset = LazyPickleDataset(filepath=str(tmp_path / "inference_bundle.pkl"))
    with pytest.raises(Exception, match="inference_bundle.pkl"):
        nodes.select_bundle(dataset.load(), {"bundle_uri": uri})
