"""A hostile client against a real ``racecast serve`` on loopback: fuzzing and bad requests.

The server is the end-to-end test's (:mod:`tests.serving.test_e2e_loopback`): the real
command in a temporary project whose Feast online store holds the synthetic world's
history (Kedro's ingestion and features pipelines), the serving tests' tiny fitted bundle
as a pickle. The project is built once for the module; each test starts its own server
(a few seconds) with the settings it needs in ``conf/local/parameters/serving.yml`` and a
second API key in ``conf/local/credentials.yml``.

* schemathesis 4 runs every check over the served OpenAPI document (examples, coverage
  and fuzzing phases, a bounded number of examples per operation, fixed seed) and must
  find nothing;
* each hostile request of issue 13 is refused with a 4xx that names the bound or the
  field, ``/health`` answers while the request is processed, and the server's RSS stays
  within 200 MB of what it was before (timings are measured in ``benchmarks/serving.py``,
  never asserted here);
* what key A posts under a race id is never what key B reads.
"""

from __future__ import annotations

import json
import pickle
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.pipelines.scoring import test_pipeline as scoring_run
from tests.serving import test_e2e_loopback as e2e

pytestmark = pytest.mark.slow

ROOT = scoring_run.ROOT
API_KEY = e2e.API_KEY
OTHER_KEY = "hostile-loopback-other-key-9d41c7"
#: Examples per operation and phase (schemathesis ``--max-examples``).
MAX_EXAMPLES = 25
SEED = 20261206
#: A body over a request bound never reaches scoring: memory must not grow with it.
RSS_SLACK_BYTES = 200 * 1024 * 1024

bundle = scoring_run.bundle


@pytest.fixture(scope="module")
def project_root(tmp_path_factory, bundle) -> Iterator[Path]:
    """A project with the synthetic world's history in its online store (built once)."""
    root = tmp_path_factory.mktemp("hostile")
    shutil.copytree(
        ROOT / "feature_repo", root / "feature_repo", ignore=shutil.ignore_patterns("data")
    )
    (root / "data" / "04_feature").mkdir(parents=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        _, days = scoring_run._world()
        scoring_run._run(root, bundle, days[:-1], [days[-1]])
    shutil.copytree(ROOT / "conf" / "base", root / "conf" / "base")
    (root / "conf" / "local" / "parameters").mkdir(parents=True)
    (root / "conf" / "local" / "credentials.yml").write_text(
        yaml.safe_dump({"racecast_api_keys": [OTHER_KEY]}), encoding="utf-8"
    )
    shutil.copy2(ROOT / "pyproject.toml", root / "pyproject.toml")
    path = root / "data" / "06_models" / "hostile_bundle.pkl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        pickle.dump(bundle, handle)
    yield root


def _serving(root: Path, **settings) -> None:
    (root / "conf" / "local" / "parameters" / "serving.yml").write_text(
        yaml.safe_dump({"serving": settings}), encoding="utf-8"
    )


@pytest.fixture
def server(project_root) -> Iterator[e2e.Server]:
    """``racecast serve`` with the default bounds and back-off."""
    _serving(project_root)
    for srv, _ in e2e._serve(project_root, project_root / "data/06_models/hostile_bundle.pkl"):
        yield srv


@pytest.fixture
def fuzz_server(project_root) -> Iterator[e2e.Server]:
    """``racecast serve`` whose auth back-off never starts (schemathesis omits keys on purpose)."""
    _serving(project_root, auth_free_failures=1_000_000)
    for srv, _ in e2e._serve(project_root, project_root / "data/06_models/hostile_bundle.pkl"):
        yield srv


def _upcoming_card() -> dict:
    """Tomorrow's racecard of the synthetic world (valid, never ingested)."""
    racecards, days = scoring_run._world()
    return json.loads(racecards[f"{days[-1]}.racecard"])


HEADERS = {"X-API-Key": API_KEY, "Content-Type": "application/json"}


def test_schemathesis_all_checks_find_nothing(fuzz_server, tmp_path):
    # Rules that span records (unique ids, draws within the field, the off time on the
    # meeting's date) cannot be written in JSON Schema: a schema-valid racecard that
    # breaks one is rightly a 422 naming the field, so positive data may get 422.
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        "[checks.positive_data_acceptance]\n"
        'expected-statuses = ["2xx", "401", "404", "409", "422", "429"]\n',
        encoding="utf-8",
    )
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "--config-file",
            str(config),
            "--no-color",
            "run",
            f"{fuzz_server.url}/openapi.json",
            "--header",
            f"X-API-Key: {API_KEY}",
            "--checks",
            "all",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            str(SEED),
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    report = result.stdout[-8000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
    cases = re.search(r"(\d+) generated, (\d+) passed", report)
    assert cases is not None and cases.group(1) == cases.group(2), report  # nothing failed
    assert int(cases.group(1)) >= 100, report
    # the documented examples reached scoring
    metrics = httpx.get(f"{fuzz_server.url}/metrics").text
    assert e2e._counter(metrics, "POST", "/api/v1/predict", 200) >= 1.0, metrics


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _card_with(mutate) -> str:
    card = _upcoming_card()
    mutate(card)
    return json.dumps(card)


def _first_race(card: dict) -> dict:
    return card["meetings"][0]["races"][0]


def _hostile_requests() -> list[tuple[str, dict, bytes, str]]:
    """(name, headers, body, what the answer must name)."""
    deep = ("[" * 1000 + "]" * 1000).encode()
    race = _first_race(_upcoming_card())
    many_runners = json.dumps(
        {
            "format": "racecast.racecard/1",
            "meetings": [
                {
                    "date": "2025-02-06",
                    "course": "ST",
                    "races": [{**race, "runners": [{"horse_id": str(i)} for i in range(10_000)]}],
                }
            ],
        }
    ).encode()
    many_races = json.dumps(
        {
            "format": "racecast.racecard/1",
            "meetings": [
                {
                    "date": "2025-02-06",
                    "course": "ST",
                    "races": [
                        {
                            "race_id": f"R{i}",
                            "off_time": race["off_time"],
                            "distance_m": 1200,
                            "runners": [{"horse_id": f"H{j}"} for j in range(7)],
                        }
                        for i in range(700)
                    ],
                }
            ],
        }
    ).encode()
    valid = json.dumps(_upcoming_card()).encode()

    def odds(card):
        _first_race(card)["runners"][0]["odds"] = {"final": 1e300}

    def rating(card):
        _first_race(card)["runners"][0]["rating"] = -50

    def off_time(year):
        def mutate(card):
            _first_race(card)["off_time"] = f"{year}-06-01T14:30:00+00:00"

        return mutate

    def meeting_far(card):
        card["meetings"][0]["date"] = "2021-01-01"

    return [
        ("deep JSON", HEADERS, deep, "max_json_depth"),
        ("10,000 runners", HEADERS, many_runners, "max_runners_per_race"),
        ("700 races", HEADERS, many_races, "max_races_per_request"),
        ("text/plain", {**HEADERS, "Content-Type": "text/plain"}, valid, "Content-Type"),
        ("XML", {**HEADERS, "Content-Type": "application/xml"}, b"<racecard/>", "Content-Type"),
        (
            "form",
            {**HEADERS, "Content-Type": "application/x-www-form-urlencoded"},
            b"a=1",
            "Content-Type",
        ),
        (
            "multipart",
            {**HEADERS, "Content-Type": "multipart/form-data; boundary=x"},
            b"--x--",
            "Content-Type",
        ),
        ("no content type", {"X-API-Key": API_KEY}, valid, "Content-Type"),
        ("odds 1e300", HEADERS, _card_with(odds).encode(), "odds_final"),
        ("rating -50", HEADERS, _card_with(rating).encode(), "rating"),
        ("off time 1900", HEADERS, _card_with(off_time(1900)).encode(), "off_time"),
        ("off time 2099", HEADERS, _card_with(off_time(2099)).encode(), "off_time"),
        ("off time years from the meeting", HEADERS, _card_with(meeting_far).encode(), "off_time"),
    ]


def test_hostile_requests_are_refused_naming_the_bound_while_health_answers(server):
    pid = server.process.pid
    with httpx.Client(base_url=server.url, timeout=60.0) as client:
        valid = client.post(
            "/api/v1/predict", content=json.dumps(_upcoming_card()), headers=HEADERS
        )
        assert valid.status_code == 200, valid.text
        start_rss = _rss_bytes(pid)
        for name, headers, body, named in _hostile_requests():
            answer: dict[str, httpx.Response] = {}

            def send(headers=headers, body=body, answer=answer):
                with httpx.Client(base_url=server.url, timeout=60.0) as other:
                    answer["r"] = other.post("/api/v1/predict", content=body, headers=headers)

            sender = threading.Thread(target=send)
            sender.start()
            health = client.get("/health")  # while the hostile request is in flight
            sender.join()
            response = answer["r"]
            assert health.status_code == 200, (name, health.text)
            assert 400 <= response.status_code < 500, (name, response.status_code, response.text)
            assert response.status_code in (413, 415, 422), (name, response.status_code)
            assert named in response.text, (name, response.text)
            assert "Traceback" not in response.text
            assert _rss_bytes(pid) - start_rss < RSS_SLACK_BYTES, name
        metrics = client.get("/metrics").text
    assert 'racecast_rejected_requests_total{reason="unsupported_media_type"} 5.0' in metrics
    assert 'racecast_rejected_requests_total{reason="limit_exceeded"} 3.0' in metrics
    assert 'racecast_rejected_requests_total{reason="invalid_request"} 5.0' in metrics
    # rejected requests are summarised in the log, not logged one by one
    reports = [
        line for line in server.output().splitlines() if "rejected since its last report" in line
    ]
    assert len(reports) == 1, server.output()


def _odds(race: dict) -> dict[str, float | None]:
    return {r["horse_id"]: r["market_odds"] for r in race["runners"]}


def test_key_b_never_reads_what_key_a_posted(server):
    card = _upcoming_card()
    race = _first_race(card)
    race_id = race["race_id"]
    # A posts its own version of a race the server scores itself (other odds) ...
    doctored = json.loads(json.dumps(card))
    first = _first_race(doctored)["runners"][0]
    first["odds"] = {**(first.get("odds") or {}), "final": 77.0}
    # ... and a race the server does not know (only the racecard's id differs)
    private = json.loads(json.dumps(card))
    private["meetings"] = [{**private["meetings"][0], "races": [_first_race(private)]}]
    _first_race(private)["race_id"] = f"{race_id}-A"
    with httpx.Client(base_url=server.url, timeout=60.0) as client:
        for body in (doctored, private):
            posted = client.post("/api/v1/predict", content=json.dumps(body), headers=HEADERS)
            assert posted.status_code == 200, posted.text
        own = client.get(f"/api/v1/races/{race_id}", headers={"X-API-Key": API_KEY})
        other = client.get(f"/api/v1/races/{race_id}", headers={"X-API-Key": OTHER_KEY})
        own_private = client.get(f"/api/v1/races/{race_id}-A", headers={"X-API-Key": API_KEY})
        other_private = client.get(f"/api/v1/races/{race_id}-A", headers={"X-API-Key": OTHER_KEY})
    # the server's own prediction of R is what every key reads; A's post never replaces it
    assert own.status_code == other.status_code == 200, (own.text, other.text)
    assert own.json() == other.json()
    assert _odds(other.json())[first["horse_id"]] != 77.0
    # a race only A posted is A's alone
    assert own_private.status_code == 200 and own_private.json()["race_id"] == f"{race_id}-A"
    assert other_private.status_code == 404, other_private.text


def test_wrong_keys_back_off_exponentially_per_address(server):
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        wrong = [
            client.get("/api/v1/horses/x", headers={"X-API-Key": f"guess-{i}"}).status_code
            for i in range(8)
        ]
        blocked = client.get("/api/v1/horses/x", headers={"X-API-Key": API_KEY})
        metrics = client.get("/metrics").text
    assert wrong[:5] == [401] * 5  # the free failures
    assert 429 in wrong[5:]  # then the address waits, whatever it sends
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) >= 1
    assert "racecast_auth_failures_total" in metrics
