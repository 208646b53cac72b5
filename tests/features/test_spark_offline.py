"""The scale engines (Spark offline, Redis online, SQL registry) against the embedded ones.

Two copies of one temporary project over a random world's state tables: one with the
default ``feature_store.yaml`` (ASOF DuckDB offline, SQLite online, file registry), one
with the shipped ``feature_store.scale.yaml`` (Spark ``local[2]`` offline through
SparkSources generated from the same definitions, Redis online on a redis-server started
here on a free loopback port, a SQLite SQL registry). Spark's JVM and redis-server are
started by the fixtures and stopped by PID. Both stores must then give the same
point-in-time join for every runner and the same online state for every entity.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from racecast.features import engines, entities, state, store, transform
from racecast.features.online_read import OnlineReader
from tests.features import test_redis_online as redis_test

from .conftest import make_world

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SCALE_YAML = "feature_store.scale.yaml"
SERVICE = "combined_v1"
redis_url = redis_test.redis_url


def spark_skip_reason() -> str | None:
    """Why Spark cannot run here (None when it can)."""
    import importlib.util

    if importlib.util.find_spec("pyspark") is None:
        return 'pyspark is not installed (pip install -c constraints.txt -e ".[scale]")'
    if engines.java_binary() is None:
        return "no Java runtime (apt-get install openjdk-17-jre-headless)"
    return None


@pytest.fixture(scope="module")
def spark() -> Iterator[object]:
    """A Spark ``local[2]`` session with the scale yaml's settings; its JVM stopped by PID."""
    reason = spark_skip_reason()
    if reason:
        pytest.skip(reason)
    from pyspark import SparkConf, SparkContext
    from pyspark.sql import SparkSession

    _, _, config = engines.load_config(ROOT / "feature_repo" / SCALE_YAML)
    conf = SparkConf().setAll(list(config.offline_store.spark_conf.items()))
    session = SparkSession.builder.config(conf=conf).getOrCreate()
    jvm = SparkContext._gateway.proc
    try:
        assert session.sparkContext.master == "local[2]"
        yield session
    finally:
        session.stop()
        SparkContext._gateway.shutdown()
        SparkContext._gateway = None
        SparkContext._jvm = None
        jvm.terminate()
        try:
            jvm.wait(timeout=30)
        except Exception:  # noqa: BLE001 - a JVM that ignores SIGTERM is killed
            jvm.kill()
            jvm.wait()


@pytest.fixture(scope="module")
def projects(tmp_path_factory, spark, redis_url) -> Iterator[dict]:
    """The embedded project and its scale copy, both applied over the same state tables."""
    races, runners = make_world(seed=5, n_races=90, n_days=26)
    tables = state.build_state_tables(races, runners)
    roots = {}
    for name in ("embedded", "scale"):
        root = tmp_path_factory.mktemp(name)
        shutil.copytree(ROOT / "feature_repo", root / "feature_repo", ignore=shutil.ignore_patterns("data"))
        out = root / "data" / "04_feature"
        out.mkdir(parents=True)
        for view, table in tables.items():  # as the catalog writes them
            table.to_parquet(out / f"{view}.parquet", coerce_timestamps="us")
        roots[name] = root
    repos = {"embedded": "feature_repo", "scale": f"feature_repo/{SCALE_YAML}"}
    old_url = os.environ.get(redis_test.URL_VARIABLE)
    os.environ[redis_test.URL_VARIABLE] = redis_url
    try:
        for name, root in roots.items():
            with redis_test.raceday_test._Chdir(root):
                store.apply_repo(repos[name])
        entity_rows = entities.entity_frame(races, runners)
        yield {
            "roots": roots,
            "repos": repos,
            "tables": tables,
            "labelled": entity_rows[entity_rows["won"].notna()].reset_index(drop=True),
        }
    finally:
        if old_url is None:
            os.environ.pop(redis_test.URL_VARIABLE, None)
        else:
            os.environ[redis_test.URL_VARIABLE] = old_url


def _store(projects: dict, name: str):
    with redis_test.raceday_test._Chdir(projects["roots"][name]):
        return store.get_store(projects["repos"][name])


def test_the_scale_yaml_opens_spark_redis_and_a_sql_registry_over_spark_sources(projects):
    fs = _store(projects, "scale")
    assert fs.config.offline_store.type == engines.SPARK_ASOF_TYPE
    assert type(fs._get_provider().offline_store).__name__ == "AsofSparkOfflineStore"
    assert fs.config.online_store.type == "redis"
    assert fs.config.registry.registry_type == "sql"
    registry = Path(fs.config.registry.path.removeprefix("sqlite:///"))
    assert registry.is_file() and registry.parent == projects["roots"]["scale"] / "feature_repo" / "data"
    sources = {fv.name: fv.batch_source for fv in fs.list_feature_views()}
    assert set(sources) == set(projects["tables"])
    assert all(type(s).__name__ == "SparkSource" for s in sources.values())
    embedded = {fv.name: fv.batch_source for fv in _store(projects, "embedded").list_feature_views()}
    assert all(type(s).__name__ == "FileSource" for s in embedded.values())
    for view, source in sources.items():  # same name, file and timestamp as the FileSource
        assert source.name == embedded[view].name
        assert Path(source.path).name == Path(embedded[view].path).name == f"{view}.parquet"
        assert source.timestamp_field == embedded[view].timestamp_field


def test_spark_point_in_time_join_equals_the_asof_duckdb_one_for_every_runner(projects):
    labelled = projects["labelled"]
    before = labelled.copy()
    served = {
        name: store.historical_state(_store(projects, name), labelled, SERVICE)
        for name in ("embedded", "scale")
    }
    pd.testing.assert_frame_equal(labelled, before)  # the caller's rows are left as they were
    duck, spark = served["embedded"], served["scale"]
    assert len(spark) == len(duck) == len(labelled)
    assert list(spark.index) == list(duck.index)
    features = [c for c in duck.columns if c not in labelled.columns]
    assert len(features) > 100
    pd.testing.assert_frame_equal(spark[features], duck[features], check_dtype=False)
    # not vacuous: runners with history and debutants, string features too
    assert 0 < duck["h_runs"].isna().sum() < len(duck) // 2
    assert duck["h_last_gear"].notna().any()
    # and the training rows built from them are identical
    pd.testing.assert_frame_equal(
        transform.build_features(labelled, spark), transform.build_features(labelled, duck)
    )


def test_spark_into_redis_materializes_what_duckdb_into_sqlite_does(projects):
    labelled = projects["labelled"]
    end = labelled["off_time"].max() + pd.Timedelta(hours=1)
    readers = {}
    for name in ("embedded", "scale"):
        with redis_test.raceday_test._Chdir(projects["roots"][name]):
            fs = store.get_store(projects["repos"][name])
            summary = store.materialize(fs, end, projects["repos"][name])
            assert summary["mode"] == "initial", summary
            readers[name] = OnlineReader(fs, SERVICE)
    assert type(readers["scale"]._provider.online_store).__name__ == "RedisOnlineStore"
    # every entity of the world, plus one no store knows
    rows = labelled.drop_duplicates(["horse_id", "jockey_id", "trainer_id", "track_key"])
    rows = pd.concat([rows, rows.iloc[[0]].assign(horse_id="no-such-horse")], ignore_index=True)
    want, want_times = readers["embedded"].read_with_times(rows)
    got, got_times = readers["scale"].read_with_times(rows)
    pd.testing.assert_frame_equal(got, want)
    pd.testing.assert_frame_equal(got_times, want_times)
    assert want["h_runs"].notna().sum() > len(rows) // 2
    assert pd.isna(got.iloc[-1]["h_runs"])


def test_a_missing_java_or_redis_is_one_clear_line(tmp_path, monkeypatch):
    _, _, config = engines.load_config(ROOT / "feature_repo" / SCALE_YAML)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))  # a JAVA_HOME without bin/java
    with pytest.raises(engines.EngineUnavailable, match=r"^the Spark offline store needs Java 17 \(none found on JAVA_HOME\)") as caught:
        engines.check_offline(config)
    assert "\n" not in str(caught.value)
    port = redis_test._free_port()  # nothing listens there
    monkeypatch.setenv(redis_test.URL_VARIABLE, f"127.0.0.1:{port}")
    shutil.copytree(ROOT / "feature_repo", tmp_path / "feature_repo", ignore=shutil.ignore_patterns("data"))
    with pytest.raises(engines.EngineUnavailable, match=rf"^Redis online store at 127.0.0.1:{port} does not answer") as caught:
        store.get_store(tmp_path / "feature_repo" / SCALE_YAML)
    assert "\n" not in str(caught.value)


def test_settings_come_from_the_environment_else_credentials_else_the_default(tmp_path):
    folder = tmp_path / "feature_repo"
    folder.mkdir()
    text = "a: ${RACECAST_X}\nb: ${RACECAST_Y:-fallback}\nc: ${RACECAST_Z:-z}\n"
    with pytest.raises(engines.EngineUnavailable, match="RACECAST_X is not set: export it or set racecast_x in conf/local/credentials.yml"):
        engines.expand(text, folder, environ={})
    (tmp_path / "conf" / "local").mkdir(parents=True)
    (tmp_path / "conf" / "local" / "credentials.yml").write_text("racecast_x: from-file\nracecast_y: file-y\n")
    assert engines.expand(text, folder, environ={}) == "a: from-file\nb: file-y\nc: z\n"
    environ = {"RACECAST_X": "env-x", "RACECAST_Z": "env-z"}
    assert engines.expand(text, folder, environ=environ) == "a: env-x\nb: file-y\nc: env-z\n"


# ------------------------------------------------------- edge cases on a hand-built repo
T = pd.Timestamp("2024-01-10 12:00", tz="UTC")
DAY = pd.Timedelta(days=1)
# view v (TTL 2 days, created timestamps): (entity, event, created, x, n, s)
V_ROWS = [
    ("e1", T - 5 * DAY, T - 5 * DAY, 1.0, 1, "a"),
    ("e1", T - DAY, T - DAY, 2.0, 2, "b"),
    ("e1", T - DAY, T - DAY + pd.Timedelta(hours=1), 3.0, 3, "c"),  # created later: wins
    ("e1", T - DAY, T - DAY - pd.Timedelta(hours=1), 4.0, 4, "d"),  # created earlier: loses
    ("e1", T, T, None, None, None),  # the latest row has null features: they win
    ("e2", T - 3 * DAY, T - 3 * DAY, 5.0, 5, "e"),
    ("e3", T + DAY, T + DAY, 6.0, 6, "f"),  # after every probe of e3
    ("e5", T, T, 7.0, 7, "g"),
    ("e6", T - 2 * DAY, T - 2 * DAY, 8.0, 8, "h"),  # exactly the TTL before the probe
]
# view w (no TTL, no created timestamp): (entity, event, y)
W_ROWS = [("e2", T - 30 * DAY, 1.5), ("e1", T - DAY, 2.5), ("e1", T + DAY, 3.5)]
# probes (entity, timestamp) -> expected x of v and y of w (None: no row)
PROBES = [
    ("e1", T - DAY, 3.0, 2.5),  # equal timestamps: the rows at T - 1 day count, latest created
    ("e1", T, None, 2.5),  # the null-valued row at T is the latest
    ("e1", T - 6 * DAY, None, None),  # nothing earlier
    ("e2", T, None, 1.5),  # older than v's TTL; w has none
    ("e2", T - 2 * DAY, 5.0, 1.5),
    ("e3", T, None, None),  # only a later row
    ("e4", T, None, None),  # an entity no view knows
    ("e5", T, 7.0, None),  # a row at the probe's own timestamp
    ("e6", T, 8.0, None),  # a row exactly TTL old is kept
    ("e1", T - DAY, 3.0, 2.5),  # a duplicate entity row
    ("e1", T + DAY, None, 3.5),
    ("e1", T - 4 * DAY, 1.0, None),
]


def _edge_store(root: Path, kind: str):
    """A one-entity, two-view store over the hand-built tables, on the offline store ``kind``."""
    from datetime import timedelta

    from feast import Entity, FeatureStore, FeatureView, Field, FileSource
    from feast.data_format import ParquetFormat
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
    from feast.repo_config import RepoConfig
    from feast.types import Float64, Int64, String

    offline = {
        "duckdb": {"type": "racecast.features.offline_store.AsofDuckDBOfflineStore"},
        "asof_spark": {"type": engines.SPARK_ASOF_TYPE},
        "feast_spark": {"type": "spark"},
    }[kind]
    config = RepoConfig(
        project="edge",
        provider="local",
        registry=str(root / f"registry_{kind}.db"),
        online_store={"type": "sqlite", "path": str(root / f"online_{kind}.db")},
        offline_store=offline,
        entity_key_serialization_version=3,
        repo_path=root,
    )
    source = FileSource if kind == "duckdb" else SparkSource
    extra = {"file_format": ParquetFormat() if kind == "duckdb" else "parquet"}
    thing = Entity(name="thing", join_keys=["eid"])
    v = FeatureView(
        name="v", entities=[thing], ttl=timedelta(days=2),
        schema=[Field(name="x", dtype=Float64), Field(name="n", dtype=Int64), Field(name="s", dtype=String)],
        source=source(name="v_src", path=str(root / "v.parquet"), timestamp_field="event_timestamp",
                      created_timestamp_column="created", **extra),
    )
    w = FeatureView(
        name="w", entities=[thing], ttl=timedelta(0), schema=[Field(name="y", dtype=Float64)],
        source=source(name="w_src", path=str(root / "w.parquet"), timestamp_field="event_timestamp", **extra),
    )
    store = FeatureStore(config=config)
    store.apply([thing, v, w])
    return store


@pytest.mark.parametrize("full_names", [False, True])
def test_the_asof_spark_join_keeps_feasts_rules_on_the_edge_cases(tmp_path, spark, full_names):
    v = pd.DataFrame(V_ROWS, columns=["eid", "event_timestamp", "created", "x", "n", "s"]).astype({"n": "Int64"})
    w = pd.DataFrame(W_ROWS, columns=["eid", "event_timestamp", "y"])
    v.to_parquet(tmp_path / "v.parquet", coerce_timestamps="us")
    w.to_parquet(tmp_path / "w.parquet", coerce_timestamps="us")
    rows = pd.DataFrame(PROBES, columns=["eid", "event_timestamp", "want_x", "want_y"])
    asked = rows[["eid", "event_timestamp"]].assign(row=range(len(rows)))
    features = ["v:x", "v:n", "v:s", "w:y"]
    served = {}
    for kind in ("duckdb", "asof_spark", "feast_spark"):
        store = _edge_store(tmp_path, kind)
        job_rows = asked if kind == "duckdb" else engines.spark_entity_rows(asked)
        out = store.get_historical_features(entity_df=job_rows, features=features, full_feature_names=full_names).to_df()
        out = out if kind == "duckdb" else engines.spark_served(out)
        served[kind] = out.sort_values("row").reset_index(drop=True)
    x, y = ("v__x", "w__y") if full_names else ("x", "y")
    asof, feast_spark, duck = served["asof_spark"], served["feast_spark"], served["duckdb"]
    # Feast's own Spark join: same columns, order and dtypes
    pd.testing.assert_frame_equal(asof, feast_spark)
    names = [c.replace(":", "__") if full_names else c.split(":")[1] for c in features]
    assert list(asof.columns) == ["eid", "event_timestamp", "row", *names]
    # the rules, spelled out
    assert asof[x].tolist() == pytest.approx(rows["want_x"].astype(float).tolist(), nan_ok=True)
    assert asof[y].tolist() == pytest.approx(rows["want_y"].astype(float).tolist(), nan_ok=True)
    assert asof.loc[0, "v__s" if full_names else "s"] == "c" and pd.isna(asof.loc[1, "v__s" if full_names else "s"])
    # and the ASOF DuckDB store's values
    pd.testing.assert_frame_equal(asof, duck[asof.columns], check_dtype=False)
