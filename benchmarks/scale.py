"""Scale benchmark: how each stage's time and peak memory grow with the size of the world.

Run from the repository root: ``.venv/bin/python benchmarks/scale.py [--scales 1,10,30]
[--no-hk] [--spark-max-scale 30] [--work DIR] [--stages a,b]`` (``pip install -e ".[scale]"``,
Java 17 and ``redis-server`` for the Spark and Redis stages; a stage whose engine is missing
is recorded as skipped with the reason); ``--markdown`` prints the JSON's tables.

For each world -- the synthetic world at ``k`` times the default number of race days
(``simulation.n_days * k``: k times the runners, the same populations, so every jockey,
trainer and track has k times the history; the world starts earlier so that it ends where
the default one does, before today), and the Hong Kong data when present
(``data/01_raw/hkjc`` or ``../shared/data/hkracing``) -- these stages run, each in its
own process so that its peak memory is its own (resident set of the process and its
children, the Spark JVM included, sampled every 50 ms, and the process's own maximum);
``stage_seconds`` is the stage's work after its imports (``stage_cpu_seconds`` the CPU
time of its process's threads, less bound to the machine's load; ``children_cpu_seconds``
that of its child processes during the stage, e.g. the Spark JVM), ``process_seconds`` the
whole process; the 1, 5 and 15-minute load averages at its start and end and the largest
1-minute one during it are recorded with it:

``simulate`` (synthetic only), ``ingest`` (parse + validate), ``state`` (state tables and
entity rows), ``join_duckdb`` (feast apply + the ``build_training_set`` node: point-in-time
join on the ASOF DuckDB store + ``build_features``, in chunks of
``features.training_chunk_runners``), ``join_spark`` (the same join on Spark ``local[2]``,
checked equal to DuckDB's), ``materialize_sqlite``, ``materialize_redis`` (a redis-server
started on a free loopback port, stopped by PID; both start from an empty online store and
a fresh registry), ``train`` (the zoo's ``lgbm_ranker`` on the protocol training split) and
``score`` (its win probabilities for the holdout runners).

Writes ``data/08_reporting/benchmark_scale.json`` (worlds, and with ``--stages`` a world's
other stages, already there and not rerun are kept; each world's ``embedded_peak_mib``;
``growth_fit_from_1x``: least-squares log-log slopes of seconds, CPU seconds and peak MiB
against runners over the worlds from 1x) and ``benchmark_scale.png`` (log-log: seconds and
peak MiB per stage against runners).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from services import ServiceUnavailable, redis_server  # noqa: E402 (benchmarks/services.py)

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "data" / "08_reporting"
HK_DIRS = (ROOT / "data" / "01_raw" / "hkjc", ROOT.parent / "shared" / "data" / "hkracing")
STAGES = (
    "simulate", "ingest", "state", "join_duckdb", "join_spark",
    "materialize_sqlite", "materialize_redis", "train", "score",
)
SERVICE = "combined_v1"
SCALE_YAML = "feature_store.scale.yaml"
REDIS_YAML = "feature_store.redis.yaml"
logger = logging.getLogger("benchmarks.scale")


# ------------------------------------------------------------------ stages (child side)
def _params() -> dict[str, Any]:
    from racecast.project import load_parameters

    return load_parameters(None, ROOT)


def _stage_simulate(work: Path, scale: float) -> dict[str, Any]:
    from racecast.simulation import SimulationConfig, simulate, to_json_text

    params = dict(_params()["simulation"])
    n_days = int(round(params["n_days"] * scale))
    # Start earlier, so that every world ends where the default one does: a world running
    # decades past today would be quarantined by ingestion's off-time plausibility rule.
    start = pd.Timestamp(params["start_date"]) - pd.Timedelta(
        days=round((n_days - params["n_days"]) * params["mean_days_between_race_days"])
    )
    params.update(n_days=n_days, start_date=start.date().isoformat())
    world = simulate(SimulationConfig.from_params(params))
    raw = work / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for day, doc in world.racecards.items():
        (raw / f"{day}.racecard.json").write_text(to_json_text(doc), encoding="utf-8")
    for day, doc in world.results.items():
        (raw / f"{day}.results.json").write_text(to_json_text(doc), encoding="utf-8")
    return {"n_days": n_days, "start_date": params["start_date"]}


def _stage_ingest(work: Path, scale: float) -> dict[str, Any]:
    from racecast.ingestion.validate import validate_and_split

    params = dict(_params()["ingestion"])
    if scale == 0:  # Hong Kong
        from racecast.ingestion.hkjc import adapt_hkjc

        folder = next(d for d in HK_DIRS if (d / "runs.csv").is_file())
        parsed = adapt_hkjc(pd.read_csv(folder / "races.csv"), pd.read_csv(folder / "runs.csv"), params)
        params["source"] = "hkjc"
    else:
        from racecast.ingestion.racecards import parse_racecards

        params.update(source="synthetic", months=None)
        files = {
            p.name.removesuffix(".json"): (lambda p=p: p.read_text(encoding="utf-8"))
            for p in sorted((work / "raw").glob("*.json"))
        }
        parsed = parse_racecards(files, params)
    races, runners, _, _ = validate_and_split(*parsed, params)
    primary = work / "primary"
    primary.mkdir(exist_ok=True)
    races.to_parquet(primary / "races.parquet")
    runners.to_parquet(primary / "runners.parquet")
    return {"races": len(races), "runners": len(runners)}


def _stage_state(work: Path, scale: float) -> dict[str, Any]:
    from racecast.features import entities, state

    races = pd.read_parquet(work / "primary" / "races.parquet")
    runners = pd.read_parquet(work / "primary" / "runners.parquet")
    compute = _params()["features"].get("compute", {})
    tables = state.build_state_tables(races, runners, compute)
    out = work / "data" / "04_feature"
    out.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():  # as the catalog writes them
        table.to_parquet(out / f"{name}.parquet", coerce_timestamps="us")
    entity_rows = entities.entity_frame(races, runners)
    entity_rows.to_parquet(work / "entity_rows.parquet")
    return {"state_rows": int(sum(len(t) for t in tables.values()))}


def _join(work: Path, repo: str, name: str) -> dict[str, Any]:
    from racecast.features import store
    from racecast.pipelines.features.nodes import build_training_set

    os.chdir(work)
    store.apply_repo(repo)
    params = {**_params()["features"], "repo_path": repo}
    training = build_training_set(pd.read_parquet(work / "entity_rows.parquet"), {}, params)
    training.to_parquet(work / f"training_{name}.parquet")
    return {"training_rows": len(training), "training_chunk_runners": params.get("training_chunk_runners")}


def _stage_join_duckdb(work: Path, scale: float) -> dict[str, Any]:
    return _join(work, "feature_repo", "duckdb")


def _stage_join_spark(work: Path, scale: float) -> dict[str, Any]:
    out = _join(work, f"feature_repo/{SCALE_YAML}", "spark")
    duck = pd.read_parquet(work / "training_duckdb.parquet")
    spark = pd.read_parquet(work / "training_spark.parquet")
    try:
        pd.testing.assert_frame_equal(spark, duck, check_dtype=False)
        out["equal_to_duckdb"] = True
    except AssertionError as exc:
        out["equal_to_duckdb"] = False
        out["difference"] = str(exc)[:500]
    return out


def _fresh_store(work: Path, repo: str) -> None:
    """Untimed: an empty online store and a registry without materialization history.

    A rerun (``--stages``) in the same folder would otherwise materialize nothing.
    """
    from racecast.features import store

    os.chdir(work)
    store.apply_repo(repo)
    store.get_store(repo).teardown()  # the online tables and the registry file
    store.apply_repo(repo)


def _materialize(work: Path, repo: str) -> dict[str, Any]:
    from racecast.features import store

    os.chdir(work)
    end = pd.read_parquet(work / "entity_rows.parquet", columns=["event_timestamp"])["event_timestamp"].max()
    window = store.materialize(store.get_store(repo), end + pd.Timedelta(minutes=1), repo)
    return {"mode": window.get("mode")}


def _prepare_materialize_sqlite(work: Path) -> None:
    _fresh_store(work, "feature_repo")


def _prepare_materialize_redis(work: Path) -> None:
    _fresh_store(work, f"feature_repo/{REDIS_YAML}")


def _stage_materialize_sqlite(work: Path, scale: float) -> dict[str, Any]:
    return _materialize(work, "feature_repo")


def _stage_materialize_redis(work: Path, scale: float) -> dict[str, Any]:
    return _materialize(work, f"feature_repo/{REDIS_YAML}")


def _split(work: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    from racecast.pipelines.model_zoo.nodes import split_training_set

    return split_training_set(pd.read_parquet(work / "training_duckdb.parquet"), _params()["model_zoo"])


def _stage_train(work: Path, scale: float) -> dict[str, Any]:
    import pickle

    from racecast.features.specs import FUNDAMENTAL_FEATURES
    from racecast.models.base import relevance_from_position
    from racecast.models.factory import build_model

    zoo = _params()["model_zoo"]
    train, _, _ = _split(work)
    top = zoo.get("cv", {}).get("relevance_top")
    relevance = relevance_from_position(train["position"].astype("float64"), top=int(top)) if top else None
    model = build_model(zoo["models"]["lgbm_ranker"]).fit(
        train[FUNDAMENTAL_FEATURES], train["won"], train["race_id"], relevance=relevance
    )
    (work / "model.pkl").write_bytes(pickle.dumps(model))
    return {"train_rows": len(train)}


def _stage_score(work: Path, scale: float) -> dict[str, Any]:
    import pickle

    from racecast.features.specs import FUNDAMENTAL_FEATURES

    _, hold, _ = _split(work)
    model = pickle.loads((work / "model.pkl").read_bytes())  # noqa: S301 - written by _stage_train
    p = np.asarray(model.predict_proba(hold[FUNDAMENTAL_FEATURES], hold["race_id"]), dtype="float64")
    return {"scored_rows": len(hold), "mean_p": float(p.mean())}


def _children_cpu() -> float:
    """CPU seconds of this process's children: the live ones (a Spark JVM runs until the
    process exits) and the ended ones it waited for."""
    import psutil

    ended = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = ended.ru_utime + ended.ru_stime
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def run_stage(stage: str, work: Path, scale: float, report: Path) -> None:
    """Run one stage in this process and write its facts (and own peak RSS) to ``report``."""
    from racecast.known_warnings import quiet_known_warnings

    quiet_known_warnings()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    import racecast.features.store  # noqa: F401 - imports outside the timed work
    import racecast.features.transform  # noqa: F401
    import racecast.ingestion.validate  # noqa: F401
    import racecast.models.factory  # noqa: F401

    prepare = globals().get(f"_prepare_{stage}")
    if prepare is not None:
        prepare(work)
    start, cpu, children = time.perf_counter(), time.process_time(), _children_cpu()
    facts = globals()[f"_stage_{stage}"](work, scale)
    facts["stage_seconds"] = round(time.perf_counter() - start, 3)
    facts["stage_cpu_seconds"] = round(time.process_time() - cpu, 3)  # this process's threads; less load-bound
    facts["children_cpu_seconds"] = round(_children_cpu() - children, 3)  # the Spark JVM, redis-server...
    facts["self_max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report.write_text(json.dumps(facts), encoding="utf-8")


# ------------------------------------------------------------------ parent side
def _tree_rss(process: Any) -> int:
    import psutil

    total = 0
    for p in [process, *process.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def measure(stage: str, work: Path, scale: float, env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Time one stage in a child process and sample its process tree's memory."""
    import psutil

    report = work / f".{stage}.json"
    report.unlink(missing_ok=True)
    load_start = [round(x, 2) for x in os.getloadavg()]
    log = work / f"{stage}.log"
    command = [sys.executable, str(Path(__file__).resolve()), "--stage", stage, "--work", str(work), "--scale", str(scale)]
    start = time.perf_counter()
    with log.open("wb") as sink:
        child = subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT)
        handle, peak, load_max = psutil.Process(child.pid), 0, 0.0
        try:
            while child.poll() is None:
                peak = max(peak, _tree_rss(handle))
                load_max = max(load_max, os.getloadavg()[0])
                if time.perf_counter() - start > timeout:
                    break
                time.sleep(0.05)
        finally:  # timed out or interrupted: the stage (and its JVM, which ends with it) stops
            if child.poll() is None:
                child.kill()
                child.wait()
                timed_out = True
            else:
                timed_out = False
    load = {
        "load_average_start": load_start,  # 1, 5, 15 minutes
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "load_1min_max": round(load_max, 2),
    }
    if timed_out:
        return {"status": "timeout", "process_seconds": round(time.perf_counter() - start, 2), **load}
    seconds = time.perf_counter() - start
    if child.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
        return {"status": "failed", "process_seconds": round(seconds, 2), "error": " | ".join(tail)[-600:], **load}
    facts = json.loads(report.read_text(encoding="utf-8"))
    own = facts.pop("self_max_rss_mb")
    peak_mib = round(max(peak / 2**20, own), 1)
    return {"status": "ok", "process_seconds": round(seconds, 3), "peak_mib": peak_mib, **facts, **load}


def spark_missing() -> str | None:
    import importlib.util

    from racecast.features.engines import java_binary

    if importlib.util.find_spec("pyspark") is None:
        return "pyspark is not installed"
    return None if java_binary() else "no Java runtime"


def run_world(
    name: str, scale: float, work: Path, args: argparse.Namespace, before: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The stages of one world (all, or ``args.stages``), in order; a failed stage stops the ones that need it.

    ``before`` is this world's earlier record: its other stages are kept (``--stages`` reruns some).
    """
    work.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "feature_repo", work / "feature_repo", ignore=shutil.ignore_patterns("data"), dirs_exist_ok=True)
    stack = contextlib.ExitStack()
    try:
        redis_url, redis_missing = stack.enter_context(redis_server(work)), None
    except ServiceUnavailable as exc:
        redis_url, redis_missing = None, str(exc)
    env = {**os.environ, "FEAST_USAGE": "False", "PYTHONWARNINGS": "ignore::DeprecationWarning"}
    stages: dict[str, Any] = dict((before or {}).get("stages", {})) if args.stages else {}
    try:
        for stage in STAGES:
            if (stage == "simulate" and scale == 0) or (args.stages and stage not in args.stages):
                continue
            reason = None
            if stage in ("join_spark",):
                reason = spark_missing() or redis_missing
                if reason is None and scale > args.spark_max_scale:
                    reason = f"--spark-max-scale {args.spark_max_scale}"
            if stage in ("join_spark", "materialize_redis") and redis_missing:
                reason = redis_missing
            if reason:
                stages[stage] = {"status": "skipped", "reason": reason}
                logger.warning("%s %s: skipped (%s)", name, stage, reason)
                continue
            run_env = {**env, "RACECAST_REDIS_URL": redis_url} if redis_url else env
            stages[stage] = measure(stage, work, scale, run_env, args.timeout)
            logger.warning("%s %s: %s", name, stage, stages[stage])
            if stages[stage]["status"] != "ok" and stage not in ("join_spark", "materialize_redis"):
                break
    finally:
        stack.close()
    stages = {stage: stages[stage] for stage in STAGES if stage in stages}
    ingest = stages.get("ingest", {})
    return {"world": name, "scale": scale, "races": ingest.get("races"), "runners": ingest.get("runners"), "stages": stages}


def growth(worlds: list[dict[str, Any]]) -> dict[str, Any]:
    """Log-log slope of a stage's own seconds (imports excluded) against runners between the synthetic worlds, per stage."""
    synthetic = sorted((w for w in worlds if w["scale"] and w.get("runners")), key=lambda w: w["runners"])
    slopes: dict[str, Any] = {}
    for stage in STAGES:
        points = [
            (w["runners"], w["stages"][stage]["stage_seconds"])
            for w in synthetic
            if w["stages"].get(stage, {}).get("status") == "ok"
        ]
        pairs = [
            {
                "from_runners": a[0], "to_runners": b[0],
                "exponent": round(float(np.log(b[1] / a[1]) / np.log(b[0] / a[0])), 2),
            }
            for a, b in zip(points, points[1:], strict=False)
        ]
        if pairs:
            slopes[stage] = pairs
    return slopes


EMBEDDED = tuple(s for s in STAGES if s not in ("join_spark", "materialize_redis"))


def growth_fit(worlds: list[dict[str, Any]], min_scale: float = 1.0) -> dict[str, Any]:
    """Least-squares log-log slope of each stage's seconds and peak MiB against runners.

    Over the synthetic worlds of at least ``min_scale`` (below it fixed costs dominate);
    a stage needs two such worlds.
    """
    synthetic = [w for w in worlds if w["scale"] >= min_scale and w.get("runners")]
    fits: dict[str, Any] = {}
    for stage in STAGES:
        done = [(w["runners"], w["stages"][stage]) for w in synthetic if w["stages"].get(stage, {}).get("status") == "ok"]
        if len(done) < 2:
            continue
        x = np.log([r for r, _ in done])
        fits[stage] = {
            "runners": [r for r, _ in done],
            "seconds_exponent": round(float(np.polyfit(x, np.log([f["stage_seconds"] for _, f in done]), 1)[0]), 2),
            "peak_mib_exponent": round(float(np.polyfit(x, np.log([f["peak_mib"] for _, f in done]), 1)[0]), 2),
        }
        cpu = [(r, f["stage_cpu_seconds"]) for r, f in done if f.get("stage_cpu_seconds")]
        if len(cpu) >= 2:  # CPU seconds of the stage's process: far less bound to the machine's load
            fits[stage]["cpu_runners"] = [r for r, _ in cpu]
            fits[stage]["cpu_seconds_exponent"] = round(
                float(np.polyfit(np.log([r for r, _ in cpu]), np.log([c for _, c in cpu]), 1)[0]), 2
            )
    return fits


def embedded_peak(world: dict[str, Any]) -> float | None:
    """The largest peak MiB of the default (embedded: SQLite + DuckDB) path's stages that ran."""
    peaks = [world["stages"][s]["peak_mib"] for s in EMBEDDED if world["stages"].get(s, {}).get("status") == "ok"]
    return max(peaks) if peaks else None


def markdown(report: dict[str, Any]) -> str:
    """The report as markdown tables (seconds and peak MiB per stage and world; exponents; load)."""
    worlds = report["worlds"]

    def cell(world: dict[str, Any], stage: str) -> str:
        done = world["stages"].get(stage)
        if done is None:
            return "not run"
        if done["status"] != "ok":
            return done["status"]
        return f"{done['stage_seconds']:,.1f} s / {done['peak_mib']:,.0f} MiB"

    names = [f"{w['world']} ({w['runners']:,} runners)" if w.get("runners") else w["world"] for w in worlds]
    lines = ["| stage (seconds / peak MiB) | " + " | ".join(names) + " |", "|---" * (len(worlds) + 1) + "|"]
    lines += [f"| {stage} | " + " | ".join(cell(w, stage) for w in worlds) + " |" for stage in STAGES]
    peaks = [f"{w['embedded_peak_mib']:,.0f} MiB" if w.get("embedded_peak_mib") else "-" for w in worlds]
    lines.append("| embedded path peak | " + " | ".join(peaks) + " |")
    loads = []
    for w in worlds:
        maxima = [d["load_1min_max"] for d in w["stages"].values() if "load_1min_max" in d]
        loads.append(f"{min(maxima):.1f}-{max(maxima):.1f}" if maxima else "-")
    lines.append("| 1-min load average (max per stage, range) | " + " | ".join(loads) + " |")
    fits = report.get("growth_fit_from_1x", {})
    if fits:
        lines += [
            "",
            "| stage | worlds (runners) | seconds exponent | peak MiB exponent | CPU seconds exponent (worlds) |",
            "|---|---|---|---|---|",
        ]
        for stage, fit in fits.items():
            cpu = (
                f"{fit['cpu_seconds_exponent']} ({', '.join(f'{r:,}' for r in fit['cpu_runners'])})"
                if "cpu_seconds_exponent" in fit else "-"
            )
            lines.append(
                f"| {stage} | {', '.join(f'{r:,}' for r in fit['runners'])} | {fit['seconds_exponent']} "
                f"| {fit['peak_mib_exponent']} | {cpu} |"
            )
        cpu_cells = [
            " | ".join(
                f"{w['stages'][s]['stage_cpu_seconds']:,.1f}" if w["stages"].get(s, {}).get("stage_cpu_seconds") else "-"
                for w in worlds
            )
            for s in STAGES
        ]
        lines += ["", "| stage: CPU seconds | " + " | ".join(names) + " |", "|---" * (len(worlds) + 1) + "|"]
        lines += [f"| {stage} | {cells} |" for stage, cells in zip(STAGES, cpu_cells, strict=True)]
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    synthetic = sorted((w for w in report["worlds"] if w["scale"] and w.get("runners")), key=lambda w: w["runners"])
    for stage in STAGES:
        points = [(w["runners"], w["stages"][stage]) for w in synthetic if w["stages"].get(stage, {}).get("status") == "ok"]
        if not points:
            continue
        x = [p[0] for p in points]
        line = axes[0].plot(x, [p[1]["stage_seconds"] for p in points], marker="o", label=stage)[0]
        axes[1].plot(x, [p[1]["peak_mib"] for p in points], marker="o", color=line.get_color(), label=stage)
        for w in report["worlds"]:
            done = w["stages"].get(stage, {})
            if not w["scale"] and done.get("status") == "ok":
                axes[0].scatter([w["runners"]], [done["stage_seconds"]], marker="*", s=90, color=line.get_color())
                axes[1].scatter([w["runners"]], [done["peak_mib"]], marker="*", s=90, color=line.get_color())
    for ax, label in zip(axes, ("seconds", "peak resident memory (MiB)"), strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("runners (synthetic: lines; Hong Kong: stars)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"racecast cost per stage ({report['machine']['cpus']} cores, {report['machine']['memory_gib']} GiB)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scales", default="1,10,30", help="synthetic world sizes (x the default race days)")
    parser.add_argument("--no-hk", action="store_true", help="skip the Hong Kong data")
    parser.add_argument("--spark-max-scale", type=float, default=30.0, help="skip the Spark join above this scale")
    parser.add_argument("--timeout", type=float, default=6 * 3600, help="seconds per stage")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one, removed)")
    parser.add_argument(
        "--stages", default=None,
        help="run only these stages (comma-separated; needs --work holding the earlier stages' files); "
        "the world's other stages are kept from --output",
    )
    parser.add_argument("--output", type=Path, default=OUT / "benchmark_scale.json")
    parser.add_argument("--markdown", action="store_true", help="print --output's tables as markdown and exit")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--scale", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stages:
        args.stages = [x for x in args.stages.split(",") if x]
        if unknown := set(args.stages) - set(STAGES):
            parser.error(f"unknown stages {sorted(unknown)}; known: {', '.join(STAGES)}")
        if args.work is None:
            parser.error("--stages needs --work (the folder holding the earlier stages' files)")
    if args.markdown:
        print(markdown(json.loads(args.output.read_text(encoding="utf-8"))))  # noqa: T201
        return None
    if args.stage:
        run_stage(args.stage, args.work, args.scale, args.work / f".{args.stage}.json")
        return None
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    import signal

    import psutil

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks

    worlds = [(f"synthetic x{s:g}", float(s)) for s in (float(x) for x in args.scales.split(",") if x)]
    if not args.no_hk:
        if any((d / "runs.csv").is_file() for d in HK_DIRS):
            worlds.append(("hong kong", 0.0))
        else:
            logger.warning("Hong Kong data not found in %s: skipped", ", ".join(map(str, HK_DIRS)))
    scratch = args.work or Path(tempfile.mkdtemp(prefix="racecast-scale-"))
    previous = json.loads(args.output.read_text()) if args.output.is_file() else {"worlds": []}
    report = {
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "worlds": [w for w in previous.get("worlds", []) if w["world"] not in {n for n, _ in worlds}],
    }
    before = {w["world"]: w for w in previous.get("worlds", [])}
    done: list[dict[str, Any]] = []
    try:
        for name, scale in worlds:
            world = run_world(name, scale, scratch / name.replace(" ", "_"), args, before.get(name))
            # worlds (and, with --stages, this world's other stages) another run wrote meanwhile are kept
            latest = json.loads(args.output.read_text()) if args.output.is_file() else {"worlds": []}
            on_disk = {w["world"]: w for w in latest.get("worlds", [])}
            if args.stages and name in on_disk:
                merged = {**on_disk[name]["stages"], **{s: world["stages"][s] for s in args.stages if s in world["stages"]}}
                world["stages"] = {s: merged[s] for s in STAGES if s in merged}
                ingest = world["stages"].get("ingest", {})
                world.update(races=ingest.get("races"), runners=ingest.get("runners"))
            done.append(world)
            ours = {w["world"] for w in done}
            report["worlds"] = [w for w in latest.get("worlds", []) if w["world"] not in ours] + done
            report["worlds"].sort(key=lambda w: (w["scale"] == 0, w["scale"]))
            for w in report["worlds"]:
                w["embedded_peak_mib"] = embedded_peak(w)
            report["growth_exponent"] = growth(report["worlds"])
            report["growth_fit_from_1x"] = growth_fit(report["worlds"])
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(json.dumps(report, indent=2), encoding="utf-8")
            plot(report, args.output.with_suffix(".png"))
    finally:
        if args.work is None:
            shutil.rmtree(scratch, ignore_errors=True)
    summary = {"output": str(args.output), "growth_fit_from_1x": report.get("growth_fit_from_1x")}
    print(json.dumps(summary, indent=2))  # noqa: T201
    return report


if __name__ == "__main__":
    main()
