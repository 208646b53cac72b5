"""``kedro run --env scale`` answers what the default run does.

A second copy of the project runs the real command on the scale env -- Feast on Redis
(a redis-server started here on a free loopback port, stopped by PID), Spark ``local[2]``
offline (its JVM is the run's child and ends with it) and a SQL registry -- with the same
small world and tiny zoo as the default run of ``run_project``. Its training set (read
through Spark) must hold the same values as the default one (read through the ASOF DuckDB
store) for every runner, and its evaluation report must equal the default one within 1e-9.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from racecast.features import engines
from racecast.features.store import get_store
from tests.features import test_redis_online as redis_test
from tests.features.test_spark_offline import spark_skip_reason

from .conftest import PARAMS, copy_project, kedro_run

pytestmark = pytest.mark.slow
redis_url = redis_test.redis_url
TOLERANCE = 1e-9


@pytest.fixture(scope="module")
def scale_project(tmp_path_factory, redis_url) -> Path:
    reason = spark_skip_reason()
    if reason:
        pytest.skip(reason)
    root = copy_project(tmp_path_factory.mktemp("scale_run"))
    old = os.environ.get(redis_test.URL_VARIABLE)
    os.environ[redis_test.URL_VARIABLE] = redis_url
    try:
        kedro_run(root, PARAMS, "--env", "scale")
        yield root
    finally:
        if old is None:
            os.environ.pop(redis_test.URL_VARIABLE, None)
        else:
            os.environ[redis_test.URL_VARIABLE] = old


def _differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two JSON documents differ (numbers: by more than TOLERANCE)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{path}: keys {sorted(set(a) ^ set(b))}"]
        return [d for k in a for d in _differences(a[k], b[k], f"{path}/{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} vs {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _differences(x, y, f"{path}/{i}")]
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool):
        same = (a != a and b != b) or abs(a - b) <= TOLERANCE * max(1.0, abs(a), abs(b))
        return [] if same else [f"{path}: {a!r} vs {b!r}"]
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]


def test_the_scale_run_used_redis_spark_and_a_sql_registry(scale_project, redis_url):
    os.environ[redis_test.URL_VARIABLE] = redis_url
    try:
        store = get_store(scale_project / "feature_repo" / "feature_store.scale.yaml")
        types = (store.config.online_store.type, store.config.offline_store.type)
        assert types == ("redis", engines.SPARK_ASOF_TYPE)
        assert store.config.registry.registry_type == "sql"
        views = store.list_feature_views()
        assert views and all(type(v.batch_source).__name__ == "SparkSource" for v in views)
        assert all(v.materialization_intervals for v in views), "materialized into Redis"
    finally:
        os.environ.pop(redis_test.URL_VARIABLE, None)
    import redis

    host, port = redis_url.split(":")
    assert redis.Redis(host=host, port=int(port)).dbsize() > 100
    assert not (scale_project / "feature_repo" / "data" / "online_store.db").exists()


def test_the_spark_training_set_equals_the_duckdb_one(run_project, scale_project):
    name = Path("data") / "05_model_input" / "training_set.parquet"
    duck = pd.read_parquet(run_project / name)
    spark = pd.read_parquet(scale_project / name)
    assert len(duck) > 1000
    assert list(spark.columns) == list(duck.columns)
    pd.testing.assert_frame_equal(spark, duck, check_dtype=False)


def test_the_scale_run_evaluates_as_the_default_run(run_project, scale_project):
    name = Path("data") / "08_reporting" / "evaluation.json"
    default = json.loads((run_project / name).read_text(encoding="utf-8"))
    scale = json.loads((scale_project / name).read_text(encoding="utf-8"))
    assert len(default["models"]) > 5
    assert _differences(scale, default) == []
