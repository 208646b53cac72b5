"""Race day replayed on the synthetic world: score a race online, push its result, next race.

Two temporary projects are built by Kedro's runner (ingestion + features, the project's
own catalog): ``full`` ingests every simulated day and gives the training set, the
reference; ``day`` ingests every day but the last, whose racecard is the upcoming card.
Then, in off-time order, each race of the last day is scored from the online store and
its result pushed (:class:`racecast.inference.results.RaceDay`): every race's served
features must equal the full training set's rows for that race, not only race 1's. The
same replay runs through a real ``racecast serve`` on loopback (``POST /api/v1/predict``
then ``POST /api/v1/results``), the probabilities compared with the bundle's on the
training rows.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from racecast.cli import cli
from racecast.features.kept_races import KeptRaces
from racecast.features.online import online_features, racecard_entity_rows
from racecast.features.online_read import OnlineReader
from racecast.features.specs import MARKET_FEATURES, VIEWS
from racecast.features.store import apply_repo, get_store
from racecast.inference.guard import LookAheadError, check_point_in_time
from racecast.inference.results import RaceDay, ResultsRejected, UnknownRaceError, raceday_paths
from racecast.inference.service import features_as_of
from racecast.pipelines.features import create_pipeline as create_features
from racecast.pipelines.ingestion import create_pipeline as create_ingestion
from tests.pipelines.scoring import test_pipeline as scoring_run
from tests.serving import test_e2e_loopback as loopback
from tests.serving.tiny_zoo import make_bundle

pytestmark = pytest.mark.slow

ROOT = scoring_run.ROOT
SERVICE = "combined_v1"
#: Columns of a training row that are not features read at scoring time.
NOT_FEATURES = {"won", "position", "odds_final", "cloth_number", "event_timestamp"}


def _params() -> dict:
    return yaml.safe_load((ROOT / "conf" / "base" / "parameters" / "features.yml").read_text())["features"]


def _build(root: Path, days: list[str], upcoming: str | None) -> DataCatalog:
    """A project at ``root`` with ``days`` ingested and their features built (cwd = root)."""
    racecards, _ = scoring_run._world()
    shutil.copytree(ROOT / "feature_repo", root / "feature_repo", ignore=shutil.ignore_patterns("data"))
    shutil.copytree(ROOT / "conf" / "base", root / "conf" / "base")
    (root / "conf" / "local").mkdir(parents=True)
    shutil.copy2(ROOT / "pyproject.toml", root / "pyproject.toml")
    (root / "data" / "04_feature").mkdir(parents=True)
    raw = root / "data" / "01_raw" / "racecards" / "synthetic"
    raw.mkdir(parents=True)
    for day in days:
        for kind in ("racecard", "results"):
            (raw / f"{day}.{kind}.json").write_text(racecards[f"{day}.{kind}"])
    if upcoming:
        folder = root / "data" / "01_raw" / "upcoming"
        folder.mkdir(parents=True)
        (folder / f"{upcoming}.racecard.json").write_text(racecards[f"{upcoming}.racecard"])
    catalog = DataCatalog.from_config(scoring_run._catalog_config())
    for name, value in scoring_run._parameters().items():
        catalog[name] = MemoryDataset(value)
    pipeline = (create_ingestion(source="synthetic") + create_features()).to_outputs(
        "training_set", "feast_materialization"
    )
    SequentialRunner().run(pipeline, catalog)
    return catalog


def _race_documents(day: str) -> list[tuple[str, str, str]]:
    """(race_id, single-race racecard text, single-race results text) in off-time order."""
    racecards, _ = scoring_run._world()
    card = json.loads(racecards[f"{day}.racecard"])
    results = json.loads(racecards[f"{day}.results"])
    races = []
    for meeting in card["meetings"]:
        header = {k: v for k, v in meeting.items() if k != "races"}
        for race in meeting["races"]:
            one_card = {**card, "meetings": [{**header, "races": [race]}]}
            one_result = {**results, "results": [r for r in results["results"] if r["race_id"] == race["race_id"]]}
            races.append((race["off_time"], race["race_id"], json.dumps(one_card), json.dumps(one_result)))
    races.sort(key=lambda r: (pd.Timestamp(r[0]), r[1]))
    return [(race_id, c, r) for _, race_id, c, r in races]


class _Chdir:
    def __init__(self, path: Path) -> None:
        self.path, self.old = path, Path.cwd()

    def __enter__(self) -> Path:
        os.chdir(self.path)
        return self.path

    def __exit__(self, *exc) -> None:
        os.chdir(self.old)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """The full project's training set and a race-day project before the last day."""
    _, days = scoring_run._world()
    full_root = tmp_path_factory.mktemp("full")
    with _Chdir(full_root):
        training = _build(full_root, days, None).load("training_set")
    day_root = tmp_path_factory.mktemp("day")
    with _Chdir(day_root):
        _build(day_root, days[:-1], days[-1])
    http_root = tmp_path_factory.mktemp("http") / "project"
    shutil.copytree(day_root, http_root)
    with _Chdir(http_root):
        apply_repo(http_root / "feature_repo")  # the copy's own offline sources
    return {"training": training, "day": day_root, "http": http_root, "last_day": days[-1]}


def _expected(training: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    keyed = training.set_index(["race_id", "horse_id"])
    return keyed.loc[list(zip(rows["race_id"], rows["horse_id"], strict=True))].reset_index()


def _assert_same_features(served: pd.DataFrame, expected: pd.DataFrame, race_id: str) -> None:
    columns = [c for c in served.columns if c in expected.columns and c not in NOT_FEATURES]
    assert len(columns) > 50, columns
    for column in columns:
        got, want = served[column].reset_index(drop=True), expected[column].reset_index(drop=True)
        if pd.api.types.is_numeric_dtype(want) and pd.api.types.is_numeric_dtype(got):
            np.testing.assert_allclose(
                got.to_numpy(float), want.to_numpy(float), rtol=0, atol=1e-9, equal_nan=True,
                err_msg=f"race {race_id} feature {column}",
            )
        else:
            assert got.astype(object).where(got.notna(), None).tolist() == want.astype(object).where(
                want.notna(), None
            ).tolist(), f"race {race_id} feature {column}"


def _repriced(card: str, factor: float) -> str:
    """The racecard with every runner's final odds moved by ``factor`` on their profit part."""
    document = json.loads(card)
    for meeting in document["meetings"]:
        for race in meeting["races"]:
            for runner in race["runners"]:
                final = (runner.get("odds") or {}).get("final")
                if final is not None:
                    runner["odds"] = {**runner["odds"], "final": round(1.0 + (final - 1.0) * factor, 2)}
    return json.dumps(document)


def _online_snapshot(store, rows: pd.DataFrame) -> pd.DataFrame:
    return OnlineReader(store, SERVICE).read(rows)


def _file_bytes(root: Path) -> dict[str, bytes]:
    paths = [root / "data" / "03_primary" / f"{t}.parquet" for t in ("races", "runners")]
    paths += [root / "data" / "04_feature" / f"{v}.parquet" for v in VIEWS]
    paths += sorted((root / "data" / "01_raw" / "raceday").glob("*.json"))
    return {str(p.relative_to(root)): p.read_bytes() for p in paths}


def test_race_day_replay_serves_the_training_rows_of_every_race(world):
    params = _params()
    races = _race_documents(world["last_day"])
    assert len(races) >= 4
    with _Chdir(world["day"]) as root:
        store = get_store("feature_repo")
        raceday = RaceDay(raceday_paths(None, root), store, params["compute"])
        # the service's way: one reader, kept races (a race asked for again at new prices)
        reader, kept = OnlineReader(store, SERVICE), KeptRaces(64)
        for race_id, card, results in races:
            rows = racecard_entity_rows(card, f"{race_id}.racecard.json")
            served = online_features(
                rows, SERVICE, params=params["compute"], feature_store=store, guard=check_point_in_time
            )
            _assert_same_features(served, _expected(world["training"], served), race_id)
            for odds in (rows["odds_final"], rows["odds_final"] * 1.25):
                again = online_features(
                    rows.assign(odds_final=odds), SERVICE, params=params["compute"],
                    reader=reader, guard=check_point_in_time, kept=kept,
                )
                pd.testing.assert_frame_equal(
                    again.drop(columns=MARKET_FEATURES), served.drop(columns=MARKET_FEATURES),
                    check_exact=True,
                )
            summary = raceday.push(results, f"{race_id}.results.json")
            assert summary["status"] == "added" and summary["mode"] == "incremental", summary
            assert summary["state_rows"]["horse_form"] == len(rows)

        # every race of the day is now known: the online store never answers it as upcoming
        first_id, first_card, first_results = races[0]
        rows = racecard_entity_rows(first_card, "first.racecard.json")
        with pytest.raises(LookAheadError, match=rf"race {first_id} \(off .*\): .* holds state from"):
            online_features(rows, SERVICE, params=params["compute"], feature_store=store, guard=check_point_in_time)
        # ... nor from the race kept before its result was pushed
        assert len(kept) >= 1
        with pytest.raises(LookAheadError, match=rf"race {first_id} \(off .*\)"):
            online_features(
                rows, SERVICE, params=params["compute"], reader=reader, guard=check_point_in_time, kept=kept
            )
        card_file = root / "first.racecard.json"
        card_file.write_text(first_card)
        bundle_file = root / "data" / "06_models" / "bundle.pkl"
        bundle_file.parent.mkdir(parents=True, exist_ok=True)
        bundle_file.write_bytes(pickle.dumps(make_bundle()))
        predict = ["predict", str(card_file), "--bundle", str(bundle_file)]
        for command in (["features", "online", str(card_file)], predict):
            result = CliRunner().invoke(cli, command)
            assert result.exit_code == 2, (command, result.output)
            assert "Traceback" not in result.output
            assert first_id in result.stderr and "as_of" in result.stderr, result.stderr

        # ... but point in time from the offline store, it is the training row again
        as_of = features_as_of(store, SERVICE, rows, "2100-01-01T00:00:00+00:00", params["compute"])
        _assert_same_features(as_of, _expected(world["training"], as_of), first_id)
        result = CliRunner().invoke(
            cli, ["features", "online", str(card_file), "--as-of", "2100-01-01T00:00:00+00:00"]
        )
        assert result.exit_code == 0, result.output
        assert len(json.loads(result.stdout)) == len(rows)

        # the next kedro run ingests the pushed races: the raw race-day folder holds them
        pushed = sorted(p.name for p in (root / "data" / "01_raw" / "raceday").glob("*.json"))
        assert pushed == sorted(f"{r}.{k}.json" for r, _, _ in races for k in ("racecard", "results"))


def test_pushing_the_same_results_twice_changes_nothing_and_a_correction_only_its_entities(world):
    params = _params()
    races = _race_documents(world["last_day"])
    with _Chdir(world["day"]) as root:
        store = get_store("feature_repo")
        raceday = RaceDay(raceday_paths(None, root), store, params["compute"])
        day_rows = pd.concat(
            [racecard_entity_rows(card, f"{rid}.racecard.json") for rid, card, _ in races],
            ignore_index=True,
        )
        for _, _, results in races:  # pushed by the previous test: unchanged
            before_files, before_online = _file_bytes(root), _online_snapshot(store, day_rows)
            assert raceday.push(results)["status"] == "unchanged"
            assert _file_bytes(root) == before_files
            pd.testing.assert_frame_equal(_online_snapshot(store, day_rows), before_online)

        # a correction: the first race's winner disqualified to second
        race_id, card, results = races[0]
        document = json.loads(results)
        finishers = document["results"][0]["finishers"]
        first = next(f for f in finishers if f.get("position") == 1)
        second = next(f for f in finishers if f.get("position") == 2)
        first["position"], second["position"] = 2, 1
        before = _online_snapshot(store, day_rows)
        summary = raceday.push(json.dumps(document))
        assert summary["status"] == "amended" and summary["mode"] == "rebuild"
        after = _online_snapshot(store, day_rows)
        race_rows = racecard_entity_rows(card, "x.racecard.json")
        changed = ~((before == after) | (before.isna() & after.isna())).all(axis=1)
        horses = set(day_rows.loc[changed, "horse_id"])
        jockeys, trainers = set(race_rows["jockey_id"]), set(race_rows["trainer_id"])
        assert {first["horse_id"], second["horse_id"]} <= horses
        # only runners sharing an entity (horse, jockey, trainer, track) with the corrected race changed
        related = (
            day_rows["horse_id"].isin(set(race_rows["horse_id"]))
            | day_rows["jockey_id"].isin(jockeys)
            | day_rows["trainer_id"].isin(trainers)
            | day_rows["track_key"].isin(set(race_rows["track_key"]))
        )
        assert not (changed & ~related).any(), day_rows.loc[changed & ~related, ["race_id", "horse_id"]]
        # pushing the correction again changes nothing
        assert raceday.push(json.dumps(document))["status"] == "unchanged"


def test_results_of_unknown_races_or_invalid_results_are_refused_before_any_write(world):
    params = _params()
    races = _race_documents(world["last_day"])
    with _Chdir(world["day"]) as root:
        store = get_store("feature_repo")
        raceday = RaceDay(raceday_paths(None, root), store, params["compute"])
        before = _file_bytes(root)
        _, _, results = races[1]
        unknown = json.loads(results)
        unknown["results"][0]["race_id"] = "NO-SUCH-RACE"
        with pytest.raises(UnknownRaceError, match="NO-SUCH-RACE"):
            raceday.push(json.dumps(unknown))
        broken = json.loads(results)
        broken["results"][0]["finishers"][0]["horse_id"] = "NOT-A-RUNNER"
        with pytest.raises(ResultsRejected, match="horse"):
            raceday.push(json.dumps(broken))
        assert _file_bytes(root) == before
        result_file = root / "unknown.results.json"
        result_file.write_text(json.dumps(unknown))
        result = CliRunner().invoke(cli, ["results", "push", str(result_file)])
        assert result.exit_code == 2 and "NO-SUCH-RACE" in result.stderr, result.output
        assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def server(world) -> Iterator[tuple]:
    bundle = make_bundle()
    path = world["http"] / "data" / "06_models" / "bundle.pkl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(bundle))
    yield from ((srv, bundle) for srv, _ in loopback._serve(world["http"], path))


def test_race_day_replay_through_the_http_api(world, server):
    srv, bundle = server
    races = _race_documents(world["last_day"])
    headers = {"X-API-Key": loopback.API_KEY, "Content-Type": "application/json"}
    combined_seen = 0
    with httpx.Client(base_url=srv.url, timeout=60.0) as client:
        for race_id, card, results in races:
            # the race, then again at new prices (the service keeps its fundamental rows
            # and probabilities): every probability as the bundle gives for those rows
            for priced in (card, _repriced(card, 1.2)):
                response = client.post("/api/v1/predict", content=priced, headers=headers)
                assert response.status_code == 200, response.text
                served = {r["horse_id"]: r for r in response.json()["races"][0]["runners"]}
                rows = racecard_entity_rows(priced, "card.racecard.json")
                training = _expected(world["training"], rows)
                expected = bundle.predict(training.assign(odds_final=rows["odds_final"].to_numpy()))
                for horse_id, p, combined in zip(
                    expected["horse_id"], expected["p_fundamental"], expected["p_combined"], strict=True
                ):
                    runner = served[horse_id]
                    assert runner["p_win"] == pytest.approx(p, rel=0, abs=1e-9), (race_id, horse_id)
                    want = None if np.isnan(combined) else pytest.approx(combined, rel=0, abs=1e-9)
                    assert runner["p_win_combined"] == want, (race_id, horse_id)
                    combined_seen += want is not None
            pushed = client.post("/api/v1/results", content=results, headers=headers)
            assert pushed.status_code == 200, pushed.text
            assert pushed.json()["status"] == "added"
        assert combined_seen > 0  # the combined track was checked, not only its absence
        again = client.post("/api/v1/predict", content=races[0][1], headers=headers)
        assert again.status_code == 409, again.text
        assert races[0][0] in again.json()["detail"]
        unknown = json.loads(races[0][2])
        unknown["results"][0]["race_id"] = "NO-SUCH-RACE"
        missing = client.post("/api/v1/results", content=json.dumps(unknown), headers=headers)
        assert missing.status_code == 404, missing.text
        broken = json.loads(races[0][2])
        broken["results"][0]["finishers"][0]["horse_id"] = "NOT-A-RUNNER"
        invalid = client.post("/api/v1/results", content=json.dumps(broken), headers=headers)
        assert invalid.status_code == 422, invalid.text
        locs = [d["loc"] for d in invalid.json()["detail"]]
        assert ["body", "results", 0, "finishers", 0, "horse_id"] in locs, locs
        assert client.post("/api/v1/results", content=races[0][2]).status_code == 401
