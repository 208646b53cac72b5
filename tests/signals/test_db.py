"""Signals database: migrations, idempotent publishing, bets and settlement on temp SQLite files."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import inspect
from sqlalchemy.dialects import postgresql, sqlite

from racecast.signals import (
    SchemaNotCurrentError,
    SignalsDatabaseError,
    current_revision,
    engine_from_url,
    load_bets,
    load_signals,
    place_bets,
    prepare_signals,
    publish_signals,
    results_from_tables,
    settle,
    upgrade,
)
from racecast.signals.db import alembic_config, cli, head_revision
from racecast.signals.models import Base
from racecast.signals.publish import bet_insert_statement, signal_upsert_statement

AS_OF = datetime(2026, 3, 14, 9, 0, tzinfo=UTC)
MODEL = {"name": "lgbm_ranker", "version": "3", "feature_service": "training_v1"}


@pytest.fixture()
def db_path(tmp_path):
    return tmp_path / "nested" / "signals.db"


@pytest.fixture()
def url(db_path):
    url = f"sqlite:///{db_path}"
    upgrade(url)
    return url


def scoring() -> pd.DataFrame:
    """Two races: R1 with prices (A value, B no value, C value capped), R2 without a price."""
    return pd.DataFrame(
        {
            "race_id": ["R1", "R1", "R1", "R2"],
            "horse_id": ["A", "B", "C", "D"],
            "p_win": [0.3, 0.2, 0.5, 0.4],
            "best_odds": [5.0, 4.0, 3.0, np.nan],
            "reasons": [{"top": ["form"], "rank": 1}, None, {"top": ["draw"]}, None],
        }
    )


def dump(db_path, table: str) -> list[tuple]:
    """Every stored row of a table, exactly as SQLite holds it."""
    with sqlite3.connect(db_path) as connection:
        return connection.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()


# --- migrations -------------------------------------------------------------------------


def test_migration_creates_the_schema(url, db_path):
    assert db_path.is_file()
    engine = engine_from_url(url)
    try:
        inspector = inspect(engine)
        assert set(inspector.get_table_names()) == {"alembic_version", "models", "signals", "bets"}
        uniques = {
            table: {tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)}
            for table in ("models", "signals", "bets")
        }
        assert uniques == {
            "models": {("name", "version")},
            "signals": {("as_of", "race_id", "horse_id", "model_id")},
            "bets": {("signal_id",)},
        }
        indexes = {i["name"] for i in inspector.get_indexes("signals")}
        assert {"ix_signals_race_id_horse_id", "ix_signals_model_id_as_of"} <= indexes
        signal_columns = {c["name"] for c in inspector.get_columns("signals")}
        assert signal_columns == {
            "id", "as_of", "race_id", "horse_id", "model_id", "p_win", "fair_odds", "best_odds",
            "edge", "kelly_fraction", "stake_units", "reasons_json", "created_at", "updated_at",
        }  # fmt: skip
        foreign = {
            (f["constrained_columns"][0], f["referred_table"])
            for f in inspector.get_foreign_keys("bets")
        }
        assert foreign == {("signal_id", "signals"), ("model_id", "models")}
        with engine.connect() as connection:
            # the hand-written migration and the ORM describe the same schema
            assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    finally:
        engine.dispose()
    assert current_revision(url) == head_revision() == "0001"


def test_upgrade_is_idempotent_and_downgrade_drops_the_tables(url):
    assert upgrade(url) == "0001"
    engine = engine_from_url(url)
    try:
        with engine.begin() as connection:
            config = alembic_config(url)
            config.attributes["connection"] = connection
            command.downgrade(config, "base")
        assert set(inspect(engine).get_table_names()) == {"alembic_version"}
        assert current_revision(engine) is None
    finally:
        engine.dispose()


def test_command_line_upgrade_and_current(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli' / 'signals.db'}"
    runner = CliRunner()
    before = runner.invoke(cli, ["current", "--url", url])
    assert before.exit_code == 0 and before.output.strip() == "None"
    result = runner.invoke(cli, ["upgrade", "--url", url])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith("0001")
    assert runner.invoke(cli, ["current", "--url", url]).output.strip() == "0001"
    bad = runner.invoke(cli, ["upgrade", "--url", "nonsense"])
    assert bad.exit_code != 0 and "'nonsense'" in bad.output


def test_publishing_needs_a_migrated_database(tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    with pytest.raises(
        SchemaNotCurrentError, match=r"revision None, expected '0001'.*upgrade --url"
    ):
        publish_signals(url, MODEL, scoring(), AS_OF)


# --- bad URLs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad_url", "shown", "problem"),
    [
        ("not a url", "'not a url'", "is not a SQLAlchemy URL"),
        ("mysql://user@host/db", "'mysql://user@host/db'", "backend 'mysql' is not supported"),
    ],
)
def test_a_bad_url_names_the_url(bad_url, shown, problem):
    with pytest.raises(SignalsDatabaseError) as info:
        upgrade(bad_url)
    assert shown in str(info.value) and problem in str(info.value)


def test_an_unopenable_sqlite_file_names_the_url(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    url = f"sqlite:///{blocker / 'signals.db'}"
    with pytest.raises(SignalsDatabaseError, match="signals.db") as info:
        publish_signals(url, MODEL, scoring(), AS_OF)
    assert url in str(info.value)


def test_an_unreachable_server_names_the_url_without_its_password():
    with pytest.raises(SignalsDatabaseError) as info:
        engine_from_url("postgresql://racecast:s3cret@127.0.0.1:1/signals")
    message = str(info.value)
    assert "racecast:***@127.0.0.1:1/signals" in message
    assert "s3cret" not in message


# --- publishing -------------------------------------------------------------------------


def test_republishing_the_same_scoring_leaves_the_tables_unchanged(url, db_path):
    first = publish_signals(url, MODEL, scoring(), AS_OF)
    assert first == {
        "model_id": 1,
        "as_of": "2026-03-14T09:00:00+00:00",
        "rows": 4,
        "inserted": 4,
        "updated": 0,
        "unchanged": 0,
    }
    before = {table: dump(db_path, table) for table in ("models", "signals")}
    # the same snapshot, given as text in another time zone
    second = publish_signals(url, MODEL, scoring(), "2026-03-14T10:00:00+01:00")
    assert second["rows"] == 4 and second["unchanged"] == 4
    assert second["inserted"] == second["updated"] == 0
    after = {table: dump(db_path, table) for table in ("models", "signals")}
    assert after == before
    assert len(after["signals"]) == 4 and len(after["models"]) == 1


def test_published_values_by_hand(url):
    publish_signals(url, MODEL, scoring(), AS_OF)
    stored = load_signals(url).set_index("horse_id")
    assert (stored["as_of"] == pd.Timestamp(AS_OF)).all()
    assert str(stored["as_of"].dt.tz) == "UTC"
    np.testing.assert_allclose(
        stored.loc[["A", "B", "C", "D"], "fair_odds"], [1 / 0.3, 5.0, 2.0, 2.5]
    )
    np.testing.assert_allclose(stored.loc[["A", "B", "C"], "edge"], [0.5, -0.2, 0.5])
    assert np.isnan(stored.loc["D", "edge"]) and np.isnan(stored.loc["D", "best_odds"])
    # quarter Kelly 0.25 * edge / (odds - 1), stake = 100 * min(kelly, 0.05)
    np.testing.assert_allclose(
        stored.loc[["A", "B", "C", "D"], "kelly_fraction"], [0.03125, 0, 0.0625, 0]
    )
    np.testing.assert_allclose(stored.loc[["A", "B", "C", "D"], "stake_units"], [3.125, 0, 5.0, 0])
    assert stored.loc["A", "reasons_json"] == '{"rank":1,"top":["form"]}'
    assert stored.loc["B", "reasons_json"] is None


def test_changed_probability_for_the_same_snapshot_updates_in_place(url):
    publish_signals(url, MODEL, scoring(), AS_OF)
    before = load_signals(url).set_index("horse_id")
    changed = scoring()
    changed.loc[changed["horse_id"] == "A", "p_win"] = 0.25
    counts = publish_signals(url, MODEL, changed, AS_OF)
    assert (counts["inserted"], counts["updated"], counts["unchanged"]) == (0, 1, 3)
    after = load_signals(url).set_index("horse_id")
    assert len(after) == 4
    assert after.loc["A", "id"] == before.loc["A", "id"]
    assert after.loc["A", "p_win"] == 0.25
    assert after.loc["A", "edge"] == pytest.approx(0.25)
    assert after.loc["A", "stake_units"] == pytest.approx(100 * 0.25 * 0.25 / 4)
    assert after.loc["A", "created_at"] == before.loc["A", "created_at"]
    assert after.loc["A", "updated_at"] >= before.loc["A", "updated_at"]
    pd.testing.assert_frame_equal(after.drop(index="A"), before.drop(index="A"))


def test_a_new_snapshot_or_model_version_adds_rows(url):
    publish_signals(url, MODEL, scoring(), AS_OF)
    later = publish_signals(url, MODEL, scoring(), AS_OF + timedelta(hours=1))
    assert later["inserted"] == 4
    retrained = publish_signals(url, {**MODEL, "version": "4"}, scoring(), AS_OF)
    assert retrained["inserted"] == 4 and retrained["model_id"] == 2
    assert len(load_signals(url)) == 12
    assert len(load_signals(url, as_of=AS_OF)) == 8
    assert len(load_signals(url, as_of=AS_OF, model={"name": "lgbm_ranker", "version": "4"})) == 4


def test_given_stakes_are_stored_as_given(url):
    frame = scoring().drop(columns="reasons")
    frame = frame.assign(
        fair_odds=1 / frame["p_win"], edge=0.0, kelly_fraction=0.01, stake_units=1.0
    )
    publish_signals(url, MODEL, frame, AS_OF)
    assert (load_signals(url)["stake_units"] == 1.0).all()


def test_as_of_must_carry_a_time_zone(url):
    with pytest.raises(ValueError, match="as_of .* has no time zone"):
        publish_signals(url, MODEL, scoring(), datetime(2026, 3, 14, 9, 0))


def test_a_model_version_keeps_its_feature_service(url):
    publish_signals(url, MODEL, scoring(), AS_OF)
    with pytest.raises(ValueError, match="registered with feature_service 'training_v1'"):
        publish_signals(url, {**MODEL, "feature_service": "other"}, scoring(), AS_OF)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns="p_win"), r"missing column\(s\) \['p_win'\]"),
        (lambda f: pd.concat([f, f.head(1)]), r"must be unique; repeated: \[\('R1', 'A'\)\]"),
        (lambda f: f.assign(p_win=[0.3, 0.0, 0.5, 0.4]), "column 'p_win' must be in"),
        (
            lambda f: f.assign(best_odds=[5.0, 1.0, 3.0, np.nan]),
            "column 'best_odds' must be decimal odds > 1",
        ),
        (lambda f: f.assign(stake_units=1.0), "give all of"),
        (lambda f: f.assign(race_id=["R1", None, "R1", "R2"]), "column 'race_id' has 1 missing"),
        (lambda f: f.assign(reasons_json="{"), "both 'reasons' and 'reasons_json'"),
        (
            lambda f: f.drop(columns="reasons").assign(reasons_json="{"),
            r"row 0 \(race R1, horse A\): reasons_json is not valid JSON",
        ),
    ],
)
def test_invalid_scoring_frames_are_rejected(change, message):
    with pytest.raises(ValueError, match=message):
        prepare_signals(change(scoring()))


def test_prepare_signals_does_not_mutate_its_input():
    frame = scoring()
    copy = frame.copy()
    prepare_signals(frame)
    pd.testing.assert_frame_equal(frame, copy)


def test_the_upsert_compiles_to_on_conflict_for_postgresql():
    sql = str(signal_upsert_statement("postgresql").compile(dialect=postgresql.dialect()))
    assert "ON CONFLICT (as_of, race_id, horse_id, model_id) DO UPDATE SET" in sql
    assert "signals.p_win IS DISTINCT FROM excluded.p_win" in sql
    assert "RETURNING signals.race_id, signals.horse_id" in sql
    bets = str(bet_insert_statement("postgresql").compile(dialect=postgresql.dialect()))
    assert "ON CONFLICT (signal_id) DO NOTHING" in bets
    lite = str(signal_upsert_statement("sqlite").compile(dialect=sqlite.dialect()))
    assert "ON CONFLICT (as_of, race_id, horse_id, model_id) DO UPDATE" in lite
    with pytest.raises(SignalsDatabaseError, match="dialect 'mssql' is not supported"):
        signal_upsert_statement("mssql")


# --- bets and settlement ----------------------------------------------------------------


def test_bets_are_placed_once_per_positive_stake(url, db_path):
    publish_signals(url, MODEL, scoring(), AS_OF)
    first = place_bets(url, AS_OF)
    assert first == {
        "as_of": "2026-03-14T09:00:00+00:00",
        "eligible": 2,
        "placed": 2,
        "existing": 0,
    }
    before = dump(db_path, "bets")
    again = place_bets(url, AS_OF.astimezone(timezone(timedelta(hours=-5))))
    assert (again["placed"], again["existing"]) == (0, 2)
    assert dump(db_path, "bets") == before
    bets = load_bets(url).set_index("horse_id")
    assert list(bets.index) == ["A", "C"]
    assert bets.loc["A", ["odds", "stake"]].tolist() == [5.0, 3.125]
    assert bets.loc["C", ["odds", "stake"]].tolist() == [3.0, 5.0]
    assert (bets["side"] == "back").all() and bets["result"].isna().all()


def test_a_placed_bet_is_not_changed_by_republishing(url, db_path):
    publish_signals(url, MODEL, scoring(), AS_OF)
    place_bets(url, AS_OF)
    before = dump(db_path, "bets")
    changed = scoring().assign(best_odds=[6.0, 4.0, 3.0, np.nan])
    publish_signals(url, MODEL, changed, AS_OF)
    assert place_bets(url, AS_OF)["placed"] == 0
    assert dump(db_path, "bets") == before


def test_bet_filters(url):
    publish_signals(url, MODEL, scoring(), AS_OF)
    assert place_bets(url, AS_OF, min_edge=0.6)["eligible"] == 0
    assert place_bets(url, AS_OF, max_odds=4.0)["placed"] == 1  # C at 3.0, not A at 5.0
    assert place_bets(url, AS_OF, model={"name": "lgbm_ranker", "version": "3"})["placed"] == 1
    with pytest.raises(ValueError, match="version='9'.* is not in the signals database"):
        place_bets(url, AS_OF, model={"name": "lgbm_ranker", "version": "9"})


def _bets_on(url, runners: list[tuple[str, str, float]]) -> None:
    """Publish and back one runner per (race, horse, odds) with p = 0.5 (stake 5 units)."""
    frame = pd.DataFrame(runners, columns=["race_id", "horse_id", "best_odds"]).assign(p_win=0.5)
    publish_signals(url, MODEL, frame, AS_OF)
    place_bets(url, AS_OF)


def test_settlement_by_hand(url, db_path):
    _bets_on(url, [("R1", "A", 4.0), ("R2", "B", 3.0), ("R3", "C", 5.0), ("R4", "D", 4.0)])
    results = pd.DataFrame(
        {
            "race_id": ["R1", "R1", "R2", "R2", "R3", "R4", "R4", "R4"],
            "horse_id": ["A", "X", "B", "Y", "C", "D", "Z", "W"],
            "won": [True, False, False, True, None, True, True, False],
            "starting_price": [3.2, 2.0, 2.5, 1.8, np.nan, 5.0, 3.0, 2.0],
            "void": [False, False, False, False, True, False, False, False],
        }
    )
    counts = settle(url, results)
    assert counts == {"matched": 4, "settled": 4, "corrected": 0, "unchanged": 0, "unresolved": 0}
    bets = load_bets(url).set_index("horse_id")
    assert bets["stake"].tolist() == [5.0] * 4
    assert bets["result"].tolist() == ["won", "lost", "void", "won"]
    # won at 4.0: 5 * 3 = 15; lost: -5; void: 0; dead heat of two at 4.0: 5 * (4 / 2 - 1) = 5
    np.testing.assert_allclose(bets["pnl"], [15.0, -5.0, 0.0, 5.0])
    np.testing.assert_allclose(bets.loc[["A", "B", "D"], "closing_odds"], [3.2, 2.5, 5.0])
    # clv = odds / closing - 1: 4 / 3.2 - 1 = 0.25, 3 / 2.5 - 1 = 0.2, 4 / 5 - 1 = -0.2
    np.testing.assert_allclose(bets.loc[["A", "B", "D"], "clv"], [0.25, 0.2, -0.2])
    assert np.isnan(bets.loc["C", "clv"]) and np.isnan(bets.loc["C", "closing_odds"])
    assert bets["settled_at"].notna().all()

    before = dump(db_path, "bets")
    again = settle(url, results)
    assert again == {"matched": 4, "settled": 0, "corrected": 0, "unchanged": 4, "unresolved": 0}
    assert dump(db_path, "bets") == before


def test_a_corrected_result_resettles_and_unknown_outcomes_stay_open(url):
    _bets_on(url, [("R1", "A", 4.0), ("R2", "B", 3.0)])
    results = pd.DataFrame(
        {
            "race_id": ["R1", "R2"],
            "horse_id": ["A", "B"],
            "position": [1, 3],
            "closing_odds": [4.0, 3.0],
        }
    )
    settle(url, results)
    corrected = results.assign(position=[2, 1])  # a disqualification reverses the result
    counts = settle(url, corrected)
    assert (counts["settled"], counts["corrected"]) == (0, 2)
    np.testing.assert_allclose(load_bets(url)["pnl"], [-5.0, 10.0])

    _bets_on(url, [("R5", "E", 4.0)])
    pending = pd.DataFrame({"race_id": ["R5"], "horse_id": ["E"], "won": [pd.NA]})
    assert settle(url, pending)["unresolved"] == 1
    assert load_bets(url).set_index("horse_id").loc["E", "result"] is None


def test_results_from_the_canonical_tables():
    races = pd.DataFrame({"race_id": ["R1", "R2", "R3"], "status": ["official", "void", "pending"]})
    runners = pd.DataFrame(
        {
            "race_id": ["R1", "R1", "R1", "R2", "R3"],
            "horse_id": ["A", "B", "N", "C", "D"],
            "non_runner": [False, False, True, False, False],
            "post_won": pd.array([True, False, None, None, None], dtype="boolean"),
            "post_position": pd.array([1, 2, None, None, None], dtype="Int64"),
            "post_starting_price": [3.0, 5.0, np.nan, np.nan, np.nan],
        }
    )
    results = results_from_tables(races, runners)
    assert results["horse_id"].tolist() == ["A", "B", "N", "C"]  # pending R3 left out
    assert results["void"].tolist() == [False, False, True, True]
    assert results["won"].tolist()[:2] == [True, False]
    assert results["starting_price"].tolist()[:2] == [3.0, 5.0]


def test_invalid_results_are_rejected(url):
    with pytest.raises(ValueError, match="needs a 'won' or a 'position' column"):
        settle(url, pd.DataFrame({"race_id": ["R1"], "horse_id": ["A"]}))
    with pytest.raises(ValueError, match="column 'starting_price' must be decimal odds > 1"):
        settle(
            url,
            pd.DataFrame(
                {"race_id": ["R1"], "horse_id": ["A"], "won": [True], "starting_price": [1.0]}
            ),
        )


def test_a_runner_that_took_no_part_is_refunded():
    races = pd.DataFrame({"race_id": ["R1"], "status": ["official"]})
    runners = pd.DataFrame(
        {
            "race_id": ["R1", "R1", "R1"],
            "horse_id": ["A", "B", "T"],
            "non_runner": [False, False, False],
            "post_won": pd.array([True, False, None], dtype="boolean"),
            "post_position": pd.array([1, 2, None], dtype="Int64"),
            "post_starting_price": [3.0, 5.0, np.nan],
            "post_outcome": pd.array([None, None, "took_no_part"], dtype="string"),
        }
    )
    results = results_from_tables(races, runners)
    assert results["void"].tolist() == [False, False, True]
