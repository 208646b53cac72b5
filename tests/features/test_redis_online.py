"""Feast's Redis online store against the SQLite one, on a real redis-server.

A race-day project is built by Kedro's runner (ingestion + features on the synthetic
world, every day but the last, whose racecard is upcoming; as in
``tests/inference/test_raceday.py``) and materialized into its SQLite online store. A copy
of it uses the shipped ``feature_repo/feature_store.redis.yaml`` (``RACECAST_REDIS_URL``
pointing at a ``redis-server`` started here on a free loopback port, stopped by PID) with
its own registry, and is materialized into Redis up to the same time. Both must then
answer the same values and event times for every feature of every runner of the day,
through racecast's :class:`~racecast.features.online_read.OnlineReader` and Feast's
``get_online_features``; a results push lands in both alike and the point-in-time guard
refuses the pushed race on Redis too.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pandas as pd
import pytest

from racecast.features.kept_races import KeptRaces
from racecast.features.online import online_features, racecard_entity_rows
from racecast.features.online_read import OnlineReader
from racecast.features.store import (
    apply_repo,
    get_store,
    materialize,
    materialized_until,
    online_state,
)
from racecast.inference.guard import LookAheadError, check_point_in_time
from racecast.inference.results import RaceDay, raceday_paths
from tests.inference import test_raceday as raceday_test
from tests.pipelines.scoring import test_pipeline as scoring_run

pytestmark = pytest.mark.slow

ROOT = scoring_run.ROOT
SERVICE = raceday_test.SERVICE
REDIS_SERVER = shutil.which("redis-server")
URL_VARIABLE = "RACECAST_REDIS_URL"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_redis(process: subprocess.Popen, port: int, timeout_s: float = 30.0) -> None:
    import redis

    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode}: {process.stderr.read()!r}")
        try:
            if redis.Redis(host="127.0.0.1", port=port, socket_timeout=1).ping():
                return
        except redis.exceptions.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory) -> Iterator[str]:
    """``host:port`` of a fresh redis-server on loopback (no persistence), stopped by PID."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server; make test installs it)")
    port = _free_port()
    folder = tmp_path_factory.mktemp("redis")
    command = [
        REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "no", "--dir", str(folder),
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_redis(process, port)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def projects(tmp_path_factory, redis_url) -> Iterator[dict]:
    """The SQLite race-day project and its Redis copy, both materialized up to the same time."""
    _, days = scoring_run._world()
    sqlite_root = tmp_path_factory.mktemp("sqlite") / "project"
    sqlite_root.mkdir()
    with raceday_test._Chdir(sqlite_root):
        raceday_test._build(sqlite_root, days[:-1], days[-1])
        end = materialized_until(get_store("feature_repo"))
    assert end is not None
    redis_root = tmp_path_factory.mktemp("redis_project") / "project"
    shutil.copytree(sqlite_root, redis_root)
    repo = redis_root / "feature_repo"
    shutil.rmtree(repo / "data")
    shutil.copy2(ROOT / "feature_repo" / "feature_store.redis.yaml", repo / "feature_store.yaml")
    old_url = os.environ.get(URL_VARIABLE)
    os.environ[URL_VARIABLE] = redis_url
    try:
        with raceday_test._Chdir(redis_root):
            apply_repo("feature_repo")
            summary = materialize(get_store("feature_repo"), end, "feature_repo")
        assert summary["mode"] == "initial", summary
        yield {"sqlite": sqlite_root, "redis": redis_root, "last_day": days[-1]}
    finally:
        if old_url is None:
            os.environ.pop(URL_VARIABLE, None)
        else:
            os.environ[URL_VARIABLE] = old_url


def _stores(projects: dict) -> tuple:
    sqlite = get_store(projects["sqlite"] / "feature_repo")
    redis = get_store(projects["redis"] / "feature_repo")
    assert sqlite.config.online_store.type == "sqlite"
    assert redis.config.online_store.type == "redis"
    assert redis.config.online_store.connection_string == os.environ[URL_VARIABLE]
    return sqlite, redis


def _day_rows(projects: dict) -> pd.DataFrame:
    """Entity rows of every runner of the upcoming day, plus one entity no store knows."""
    races = raceday_test._race_documents(projects["last_day"])
    rows = pd.concat(
        [racecard_entity_rows(card, f"{race_id}.racecard.json") for race_id, card, _ in races],
        ignore_index=True,
    )
    stranger = rows.iloc[[0]].assign(horse_id="no-such-horse", jockey_id="no-such-jockey")
    return pd.concat([rows, stranger], ignore_index=True)


def test_redis_online_store_answers_what_the_sqlite_one_does_for_every_runner(projects):
    sqlite, redis = _stores(projects)
    rows = _day_rows(projects)
    sqlite_reader, redis_reader = OnlineReader(sqlite, SERVICE), OnlineReader(redis, SERVICE)
    asked = [list(names) for _, names, _ in redis_reader._plan]

    want, want_times = sqlite_reader.read_with_times(rows)
    got, got_times = redis_reader.read_with_times(rows)
    # not vacuous: many features, runners with history and debutants among them
    assert len(want.columns) > 50
    assert 10 <= want["h_runs"].notna().sum() < len(rows) - 1
    pd.testing.assert_frame_equal(got, want)
    pd.testing.assert_frame_equal(got_times, want_times)
    assert want_times.notna().to_numpy().sum() > len(rows), "state rows have event times"
    # the stranger: no horse or jockey row on either store (NaN, not epoch 0)
    horse_views = [v for v, _, keys in redis_reader._plan if "horse_id" in keys]
    assert got_times.iloc[-1][[v.name for v in horse_views]].isna().all()

    # the lean Redis read (one pipeline of every view's HMGET) against the provider's
    # online_read per view (lean=False), and the provider path on SQLite too
    assert redis_reader._redis_fields is not None and sqlite_reader._redis_fields is None
    for store in (redis, sqlite):
        provider = OnlineReader(store, SERVICE, lean=False)
        assert provider._redis_fields is None and provider.store_version() is None
        via_provider, via_provider_times = provider.read_with_times(rows)
        pd.testing.assert_frame_equal(via_provider, want)
        pd.testing.assert_frame_equal(via_provider_times, want_times)

    # a second read answers the same: the reader's requested names are not grown by Redis
    again, again_times = redis_reader.read_with_times(rows)
    pd.testing.assert_frame_equal(again, want)
    pd.testing.assert_frame_equal(again_times, want_times)
    assert [list(names) for _, names, _ in redis_reader._plan] == asked

    # kept races: only on SQLite, whose data_version tells a changed store; Redis has none
    assert redis_reader.store_version() is None and sqlite_reader.store_version() is not None
    kept = {"sqlite": KeptRaces(64), "redis": KeptRaces(64)}
    served = {
        name: online_features(rows, SERVICE, reader=reader, kept=kept[name])
        for name, reader in (("sqlite", sqlite_reader), ("redis", redis_reader))
    }
    assert len(kept["redis"]) == 0 and len(kept["sqlite"]) == rows["race_id"].nunique()
    pd.testing.assert_frame_equal(served["redis"], served["sqlite"], check_exact=True)

    # Feast's own online path answers the same on both stores, and what the reader reads
    feast_sqlite = online_state(sqlite, rows, SERVICE)
    feast_redis = online_state(redis, rows, SERVICE)
    pd.testing.assert_frame_equal(feast_redis, feast_sqlite)
    for column in want.columns:
        stored = feast_redis[column].astype(object).where(feast_redis[column].notna(), None)
        read = want[column].astype(object).where(want[column].notna(), None)
        assert stored.tolist() == read.tolist(), column


def test_a_results_push_lands_in_redis_and_the_guard_then_refuses_the_race(projects):
    params = raceday_test._params()["compute"]
    race_id, card, results = raceday_test._race_documents(projects["last_day"])[0]
    rows = racecard_entity_rows(card, f"{race_id}.racecard.json")
    readers = {}
    for name, root in (("sqlite", projects["sqlite"]), ("redis", projects["redis"])):
        with raceday_test._Chdir(root):
            store = get_store("feature_repo")
            served = online_features(
                rows, SERVICE, params=params, feature_store=store, guard=check_point_in_time
            )
            assert len(served) == len(rows)
            summary = RaceDay(raceday_paths(None, root), store, params).push(
                results, f"{race_id}.results.json"
            )
            assert summary["status"] == "added" and summary["mode"] == "incremental", summary
            assert summary["state_rows"]["horse_form"] == len(rows)
            with pytest.raises(LookAheadError, match=rf"race {race_id} \(off .*\): .* holds state from"):
                online_features(rows, SERVICE, params=params, feature_store=store, guard=check_point_in_time)
            readers[name] = OnlineReader(store, SERVICE)

    want, want_times = readers["sqlite"].read_with_times(rows)
    got, got_times = readers["redis"].read_with_times(rows)
    pd.testing.assert_frame_equal(got, want)
    pd.testing.assert_frame_equal(got_times, want_times)
    off = pd.to_datetime(rows["off_time"], utc=True).astype("int64").to_numpy() / 1e9
    assert (got_times["horse_form"].to_numpy() >= off).all(), "the pushed result is what Redis holds"


def test_a_correction_of_pushed_results_rewrites_redis_as_it_does_sqlite(projects):
    params = raceday_test._params()["compute"]
    race_id, card, results = raceday_test._race_documents(projects["last_day"])[0]
    document = json.loads(results)  # pushed by the previous test: its winner disqualified
    finishers = document["results"][0]["finishers"]
    first = next(f for f in finishers if f.get("position") == 1)
    second = next(f for f in finishers if f.get("position") == 2)
    first["position"], second["position"] = 2, 1
    rows = racecard_entity_rows(card, f"{race_id}.racecard.json")
    read = {}
    for name, root in (("sqlite", projects["sqlite"]), ("redis", projects["redis"])):
        with raceday_test._Chdir(root):
            store = get_store("feature_repo")
            before = OnlineReader(store, SERVICE).read(rows)
            summary = RaceDay(raceday_paths(None, root), store, params).push(json.dumps(document))
            assert summary["status"] == "amended" and summary["mode"] == "rebuild", summary
            read[name] = OnlineReader(store, SERVICE).read_with_times(rows)
            winner = rows.index[rows["horse_id"] == second["horse_id"]][0]
            assert read[name][0].loc[winner, "h_wins"] == before.loc[winner, "h_wins"] + 1, name
    pd.testing.assert_frame_equal(read["redis"][0], read["sqlite"][0])
    pd.testing.assert_frame_equal(read["redis"][1], read["sqlite"][1])
