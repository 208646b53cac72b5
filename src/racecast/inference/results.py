"""Race day: results in between races, through the same rules as batch ingestion.

:class:`RaceDay` takes a results document (JSON contract ``racecast.results/1``) for
races whose racecard it knows (the env's upcoming racecards, or races already in the
canonical tables: a correction), and:

1. validates it with the batch parser and validation (``parse_racecards`` +
   ``validate_and_split``): any quarantined record refuses the whole document, nothing
   is written (:class:`ResultsRejected`); a race it has no racecard for refuses it too
   (:class:`UnknownRaceError`);
2. computes the new state rows of exactly the entities that ran with the state tables'
   own functions (:class:`racecast.features.incremental.StateHistory`: incremental for a
   race after every known one, the whole tables again for a correction or a race pushed
   out of order);
3. writes them to the Feast online store (``write_online``), so the next race
   of the day is scored with this one's result, as the training set's rows are;
4. keeps the documents in the raw race-day folder (the next ``kedro run`` ingests them)
   and replaces the race's rows of the canonical tables and the offline state sources
   (so ``as_of`` reads and the next run agree).

Pushing the same results again changes nothing (``status: unchanged``, no write); a
corrected result replaces the earlier one (``status: amended``).

Several processes may push into one project (``racecast serve --workers N``, the CLI
beside a server): a push holds an exclusive lock on ``<raceday>/.push.lock`` (``flock``,
one host) and reads the canonical and state tables again when another process changed
them since this one last read or wrote them, so no push works from stale tables.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from racecast.features.incremental import OutOfOrderRace, StateHistory, latest_rows
from racecast.features.specs import VIEWS
from racecast.features.store import write_online
from racecast.ingestion.contract import RACECARD_FORMAT
from racecast.ingestion.racecards import parse_racecards
from racecast.ingestion.validate import validate_and_split
from racecast.signals.models import to_utc

logger = logging.getLogger(__name__)

__all__ = [
    "RaceDay",
    "results_problem_details",
    "RaceDayPaths",
    "ResultsRejected",
    "UnknownRaceError",
    "race_ids_by_off",
    "select_races",
]

#: Source recorded for pushed races (they arrive in the JSON contract, whatever the env).
PUSH_SOURCE = "racecards"


class UnknownRaceError(LookupError):
    """Results for a race without a known racecard."""


class ResultsRejected(ValueError):
    """A results document that batch ingestion would quarantine (nothing is written).

    Attributes:
        problems: ``[{"race_id", "horse_id", "field", "reason", "detail"}]``.
    """

    def __init__(self, source: str, problems: list[dict[str, Any]]) -> None:
        self.problems = problems
        first = problems[0]
        where = " ".join(
            f"{k} {first[k]}" for k in ("race_id", "horse_id") if first.get(k) not in (None, "")
        )
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        super().__init__(
            f"{source}: {where + ' ' if where else ''}field {first.get('field')}: "
            f"{first.get('detail') or first.get('reason')}{more}"
        )


@dataclass(frozen=True)
class RaceDayPaths:
    """Where race day reads racecards and writes what a push changes.

    Attributes:
        races: Canonical races parquet.
        runners: Canonical runners parquet.
        state: Feature view name -> its offline source parquet (the state tables).
        raceday: Folder of pushed documents (``<race_id>.racecard.json`` /
            ``<race_id>.results.json``), ingested by the next ``kedro run``.
        upcoming: Folders of the day's ``*.racecard.json``.
    """

    races: Path
    runners: Path
    state: dict[str, Path]
    raceday: Path
    upcoming: tuple[Path, ...] = field(default_factory=tuple)


def _atomic_write(path: Path, write: Any) -> None:
    """Write through a temporary file and rename (readers never see a partial file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_text(path: Path, text: str) -> None:
    _atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _write_parquet(path: Path, frame: pd.DataFrame) -> None:
    # microsecond times, as the catalog writes the state tables (Spark 3.5 reads no nanoseconds)
    _atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False, coerce_timestamps="us"))


def _results_race_ids(document: Any) -> list[str]:
    """Race ids a results document names (readable ones; the parser judges the rest)."""
    if not isinstance(document, dict) or not isinstance(document.get("results"), list):
        return []
    return [
        str(r["race_id"])
        for r in document["results"]
        if isinstance(r, dict) and isinstance(r.get("race_id"), str | int)
    ]


def _card_races(text: str) -> Iterable[tuple[dict[str, Any], dict[str, Any]]]:
    """(meeting header, race) pairs of a racecard document (nothing when unreadable)."""
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return []
    meetings = document.get("meetings") if isinstance(document, dict) else None
    pairs = []
    for meeting in meetings if isinstance(meetings, list) else []:
        if not isinstance(meeting, dict) or not isinstance(meeting.get("races"), list):
            continue
        header = {k: v for k, v in meeting.items() if k != "races"}
        pairs.extend((header, race) for race in meeting["races"] if isinstance(race, dict))
    return pairs


def select_races(text: str, race_ids: Iterable[str], source: str = "document") -> str:
    """A racecard or results document restricted to some races (the rest left out).

    Args:
        text: Racecard (``meetings``) or results (``results``) JSON text.
        race_ids: Races to keep.
        source: Name used in messages.

    Returns:
        The document's JSON text with only those races (meetings without any dropped).

    Raises:
        UnknownRaceError: If a race is not in the document.
        ValueError: If the text is not a racecard or results document.
    """
    wanted = list(dict.fromkeys(str(r) for r in race_ids))
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"{source}: not JSON ({exc})") from exc
    if isinstance(document, dict) and isinstance(document.get("results"), list):
        kept = [r for r in document["results"] if isinstance(r, dict) and str(r.get("race_id")) in wanted]
        found = {str(r.get("race_id")) for r in kept}
        out = {**document, "results": kept}
    elif isinstance(document, dict) and isinstance(document.get("meetings"), list):
        meetings, found = [], set()
        for header, race in _card_races(text):
            if str(race.get("race_id")) in wanted:
                found.add(str(race.get("race_id")))
                if meetings and {k: v for k, v in meetings[-1].items() if k != "races"} == header:
                    meetings[-1]["races"].append(race)
                else:
                    meetings.append({**header, "races": [race]})
        out = {**document, "meetings": meetings}
    else:
        raise ValueError(f"{source}: neither a racecard (meetings) nor a results (results) document")
    missing = [r for r in wanted if r not in found]
    if missing:
        raise UnknownRaceError(f"{source}: no race {missing[0]} in the document")
    return json.dumps(out, indent=2)


def race_ids_by_off(text: str) -> list[str]:
    """Race ids of a racecard document in off-time order (then race id)."""
    races = [race for _, race in _card_races(text) if race.get("race_id") is not None]
    offs = {
        id(race): to_utc(race.get("off_time"), f"race {race['race_id']}: off_time")
        for race in races
    }
    return [
        str(race["race_id"])
        for race in sorted(races, key=lambda r: (offs[id(r)], str(r["race_id"])))
    ]


def _single_card(header: dict[str, Any], race: dict[str, Any]) -> str:
    """A racecard document holding one race."""
    return json.dumps(
        {"format": RACECARD_FORMAT, "meetings": [{**header, "races": [race]}]}, indent=2
    )


def _single_results(document: dict[str, Any], race_id: str) -> str:
    """The results document restricted to one race."""
    results = [r for r in document["results"] if str(r.get("race_id")) == race_id]
    return json.dumps({**document, "results": results}, indent=2)


def _rows_equal(old: pd.DataFrame, new: pd.DataFrame) -> bool:
    """Same rows (order and dtypes aside), compared as JSON-able records."""
    if len(old) != len(new) or set(old.columns) != set(new.columns):
        return False
    columns = sorted(new.columns)

    def records(frame: pd.DataFrame) -> list[str]:
        text = frame[columns].astype(object).where(frame[columns].notna(), None)
        return sorted(json.dumps(r, default=str, sort_keys=True) for r in text.to_dict("records"))

    return records(old) == records(new)


class RaceDay:
    """Takes race results in on race day (see the module docstring).

    Args:
        paths: Where to read and write.
        feature_store: An open Feast ``FeatureStore`` (its online store is written).
        compute_params: ``features.compute`` parameters (the state tables').
        lock: Held while the online store is written (the service's store lock).
    """

    def __init__(
        self,
        paths: RaceDayPaths,
        feature_store: Any,
        compute_params: dict[str, Any] | None = None,
        lock: Any = None,
    ) -> None:
        self.paths = paths
        self.feature_store = feature_store
        self.compute_params = dict(compute_params or {})
        self._store_lock = lock or threading.Lock()
        self._lock = threading.RLock()
        self._races: pd.DataFrame | None = None
        self._runners: pd.DataFrame | None = None
        self._tables: dict[str, pd.DataFrame] | None = None
        self._history: StateHistory | None = None
        self._stamp: tuple | None = None

    # ------------------------------------------------------------------ loading
    def _files_stamp(self) -> tuple:
        """(path, mtime, size) of the tables a push reads and writes."""
        stamp = []
        for path in (self.paths.races, self.paths.runners, *self.paths.state.values()):
            try:
                stat = Path(path).stat()
            except OSError:
                stamp.append((str(path), None, None))
            else:
                stamp.append((str(path), stat.st_mtime_ns, stat.st_size))
        return tuple(stamp)

    def _load(self) -> None:
        """Read the canonical tables, the offline state tables and the run history, again
        whenever another process changed them since this one last read or wrote them."""
        if self._races is not None and self._stamp == self._files_stamp():
            return
        if self._races is not None:
            logger.info("race day: the tables changed in another process: reading them again")
        for path in (self.paths.races, self.paths.runners, *self.paths.state.values()):
            if not Path(path).is_file():
                raise FileNotFoundError(
                    f"{path} not found: run the ingestion and features pipelines first "
                    "(kedro run --env <env>)"
                )
        races = pd.read_parquet(self.paths.races)
        runners = pd.read_parquet(self.paths.runners)
        self._tables = {view: pd.read_parquet(self.paths.state[view]) for view in VIEWS}
        self._history = StateHistory(races, runners, self.compute_params)
        self._races, self._runners = races, runners
        self._stamp = self._files_stamp()

    def _racecard_of(self, race_id: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The race's (meeting header, race) from the race-day folder or the upcoming cards."""
        pushed = self.paths.raceday / f"{race_id}.racecard.json"
        folders = [(pushed.parent, [pushed] if pushed.is_file() else [])]
        folders += [(d, sorted(d.glob("*.racecard.json"))) for d in self.paths.upcoming]
        for _, files in folders:
            for file in files:
                for header, race in _card_races(file.read_text(encoding="utf-8")):
                    if str(race.get("race_id")) == race_id:
                        return header, race
        return None

    def _known_card(self, race_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        card = self._racecard_of(race_id)
        if card is None and self._races is not None and race_id in set(self._races["race_id"]):
            from racecast.ingestion.export import racecard_document

            document = racecard_document(
                self._races[self._races["race_id"] == race_id],
                self._runners[self._runners["race_id"] == race_id],
            )
            card = next(iter(_card_races(json.dumps(document))), None)
        if card is None:
            folders = ", ".join(str(p) for p in (self.paths.raceday, *self.paths.upcoming))
            raise UnknownRaceError(
                f"race {race_id}: no racecard for it in {folders} or the canonical tables; "
                "results are taken only for races whose racecard is known"
            )
        return card

    # ------------------------------------------------------------------ push
    def push(self, text: str, source: str = "request") -> dict[str, Any]:
        """Validate a results document and bring its races' results into every store.

        Args:
            text: The results document (JSON text, ``racecast.results/1``).
            source: Name used in messages (the file name for the CLI).

        Returns:
            ``{"status": "added" | "amended" | "unchanged", "races": [...],
            "state_rows": {view: n}, "mode": "incremental" | "rebuild" | None,
            "timings_ms": {"validate", "state", "online", "files"}}`` (``online``: the
            results are readable from the online store once the first three are done).

        Raises:
            ResultsRejected: If the document or a record of it is invalid.
            UnknownRaceError: If a race has no known racecard.
            FileNotFoundError: If the canonical or state tables do not exist yet.
        """
        try:
            document = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ResultsRejected(
                source, [{"field": "body", "reason": "json_invalid", "detail": f"not JSON: {exc}"}]
            ) from exc
        race_ids = list(dict.fromkeys(_results_race_ids(document)))
        with self._lock, self._process_lock():
            self._load()
            start = time.perf_counter()
            cards = {race_id: self._known_card(race_id) for race_id in race_ids}
            races, runners = self._validate(text, cards, source)
            timings = {"validate": 1000 * (time.perf_counter() - start)}
            return self._apply(document, cards, races, runners, timings)

    @contextlib.contextmanager
    def _process_lock(self) -> Iterator[None]:
        """Exclusive across the processes of this host (``flock`` on the race-day folder)."""
        folder = Path(self.paths.raceday)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / ".push.lock", "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _validate(
        self, text: str, cards: dict[str, tuple[dict, dict]], source: str
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Canonical rows of the pushed races, or :class:`ResultsRejected`."""
        files = {"push.results": text}
        for race_id, (header, race) in cards.items():
            files[f"{race_id}.racecard"] = _single_card(header, race)
        parsed = parse_racecards({k: (lambda t=t: t) for k, t in files.items()}, {"source": PUSH_SOURCE})
        if parsed[3]["files_rejected"]:
            error = parsed[3]["files_rejected"][0]["error"]
            raise ResultsRejected(source, [{"field": "body", "reason": "file_rejected", "detail": error}])
        races, runners, quarantine, _ = validate_and_split(
            *parsed, {"source": PUSH_SOURCE, "months": None}
        )
        if len(quarantine):
            columns = ["race_id", "horse_id", "field", "reason", "detail"]
            problems = quarantine[columns].astype(object).where(quarantine[columns].notna(), None)
            raise ResultsRejected(source, problems.to_dict("records"))
        if races.empty:
            raise ResultsRejected(
                source, [{"field": "results", "reason": "no_results", "detail": "no race results in the document"}]
            )
        return races, runners

    def _apply(
        self,
        document: dict[str, Any],
        cards: dict[str, tuple[dict, dict]],
        races: pd.DataFrame,
        runners: pd.DataFrame,
        timings: dict[str, float],
    ) -> dict[str, Any]:
        ids = list(races["race_id"])
        clock = time.perf_counter()
        known = self._races["race_id"].isin(ids)
        old_races, old_runners = self._races[known], self._runners[self._runners["race_id"].isin(ids)]
        summary: dict[str, Any] = {"races": ids, "state_rows": {}, "mode": None, "timings_ms": timings}
        if len(old_races) == len(ids) and _rows_equal(old_races, races) and _rows_equal(old_runners, runners):
            logger.info("results of %s: unchanged", ", ".join(ids))
            return {**summary, "status": "unchanged"}
        status = "amended" if len(old_races) else "added"
        all_races = pd.concat([self._races[~known], races], ignore_index=True)
        all_runners = pd.concat(
            [self._runners[~self._runners["race_id"].isin(ids)], runners], ignore_index=True
        )
        all_races = all_races.sort_values(["off_time", "race_id"], kind="stable").reset_index(drop=True)
        all_runners = all_runners.sort_values(["off_time", "race_id"], kind="stable").reset_index(drop=True)
        try:
            if status == "amended":
                raise OutOfOrderRace("a correction")
            new_rows = self._history.append(races, runners)
            tables = {
                view: self._tables[view] if new_rows[view].empty else _sorted_state(
                    pd.concat([self._tables[view], new_rows[view]], ignore_index=True), view
                )
                for view in VIEWS
            }
            online = new_rows
            summary["mode"] = "incremental"
        except OutOfOrderRace as why:
            logger.info("results of %s: rebuilding the state tables (%s)", ", ".join(ids), why)
            tables = self._history.rebuild(all_races, all_runners)
            touched = pd.concat([old_runners, runners], ignore_index=True)
            touched = touched.assign(track_key=_track_keys(pd.concat([old_races, races]), touched))
            online = {view: _rows_of(latest_rows(tables[view], view), touched, view) for view in VIEWS}
            summary["mode"] = "rebuild"
        timings["state"] = 1000 * (time.perf_counter() - clock)
        clock = time.perf_counter()
        with self._store_lock:
            for view in VIEWS:
                if len(online[view]):
                    write_online(self.feature_store, view, online[view])
        summary["state_rows"] = {view: len(online[view]) for view in VIEWS}
        timings["online"] = 1000 * (time.perf_counter() - clock)
        clock = time.perf_counter()
        for race_id in ids:
            header, race = cards[race_id]
            _write_text(self.paths.raceday / f"{race_id}.racecard.json", _single_card(header, race))
            _write_text(self.paths.raceday / f"{race_id}.results.json", _single_results(document, race_id))
        _write_parquet(self.paths.races, all_races)
        _write_parquet(self.paths.runners, all_runners)
        for view in VIEWS:
            if tables[view] is not self._tables[view]:
                _write_parquet(self.paths.state[view], tables[view])
        self._races, self._runners, self._tables = all_races, all_runners, tables
        self._stamp = self._files_stamp()
        timings["files"] = 1000 * (time.perf_counter() - clock)
        logger.info("results of %s: %s (%s)", ", ".join(ids), status, summary["mode"])
        return {**summary, "status": status}


def _sorted_state(table: pd.DataFrame, view: str) -> pd.DataFrame:
    """A state table in the order the features pipeline writes it."""
    keys = list(VIEWS[view].entities)
    return table.sort_values(["event_timestamp", *keys], kind="stable").reset_index(drop=True)


def _track_keys(races: pd.DataFrame, runners: pd.DataFrame) -> pd.Series:
    """Track key of each runner's race."""
    from racecast.features.columns import track_key

    by_race = races.drop_duplicates("race_id").set_index("race_id")
    keyed = track_key(by_race["course"], by_race["surface"], by_race["distance_m"])
    return runners["race_id"].map(keyed).astype("string")


def _rows_of(table: pd.DataFrame, runners: pd.DataFrame, view: str) -> pd.DataFrame:
    """Rows of a state table whose entity keys appear among ``runners``."""
    keys = list(VIEWS[view].entities)
    wanted = runners[keys].dropna().astype("string").drop_duplicates()
    return table.merge(wanted, on=keys, how="inner")


def results_problem_details(text: str, problems: list[dict[str, Any]], limit: int = 50) -> list[dict[str, Any]]:
    """FastAPI-style error details of a rejected results document, each with its JSON path.

    A problem whose message carries a path into the results (``results[0].finishers[1].
    horse_id``) gets it; any other (a rule about the race as a whole) points at the race's
    entry in ``results``.

    Args:
        text: The results document as sent.
        problems: :attr:`ResultsRejected.problems`.
        limit: Most details returned.

    Returns:
        ``[{"loc": ["body", "results", 0, ...], "msg", "type"}]``.
    """
    from racecast.inference.problems import field_loc

    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        document = None
    entries = document.get("results") if isinstance(document, dict) else None
    index = {
        str(entry.get("race_id")): i
        for i, entry in enumerate(entries if isinstance(entries, list) else [])
        if isinstance(entry, dict)
    }
    details = []
    for problem in problems[:limit]:
        message = str(problem.get("detail") or problem.get("reason") or "invalid")
        loc = field_loc(message)
        if len(loc) < 2 or loc[1] != "results":
            race = str(problem.get("race_id"))
            loc = ["body", "results", index[race]] if race in index else ["body"]
        details.append({"loc": loc, "msg": message, "type": str(problem.get("reason") or "value_error")})
    return details


def raceday_paths(env: str | None = None, root: Path | None = None) -> RaceDayPaths:
    """The race-day paths of a project env, from its catalog.

    Args:
        env: Kedro env (``local`` by default).
        root: Project root; the current directory by default.

    Returns:
        ``races``, ``runners``, ``feature_state.{view}``, ``raw_raceday`` and
        ``raw_upcoming_racecards`` of the env's catalog.
    """
    from racecast.project import dataset_path, load_catalog_config

    catalog = load_catalog_config(env, root)
    return RaceDayPaths(
        races=dataset_path(catalog, "races", root),
        runners=dataset_path(catalog, "runners", root),
        state={v: dataset_path(catalog, "feature_state.{view}", root, view=v) for v in VIEWS},
        raceday=dataset_path(catalog, "raw_raceday", root),
        upcoming=(dataset_path(catalog, "raw_upcoming_racecards", root),),
    )
