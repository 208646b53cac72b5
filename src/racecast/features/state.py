"""Per-entity state tables (the Feast offline sources) and the per-run quantities they use.

A *state row* is the state of an entity (horse, jockey, trainer, pair, track) AFTER one
of its races, stamped ``event_timestamp = off_time + post_race_delay_s``. Feast's
point-in-time join (latest row with ``event_timestamp <= off_time`` of the race being
scored) therefore only ever sees results of strictly earlier races. Every quantity here
is computed causally (cumulative sums, shifted means, trailing windows over sorted
histories), so a state row depends on its own race and earlier races only.
``docs/features.md`` gives every formula.
The entity frames the state tables are built from are made in
``racecast.features.entities``; the column helpers live in ``racecast.features.columns``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from racecast.features.columns import (
    as_float,
    category_codes,
    distance_band,
    draw_range,
    epoch_seconds,
    going_group,
    shrunk_rate,
    surface_slot,
)
from racecast.features.entities import _active_runs, _won
from racecast.features.specs import (
    DRAW_SLOTS,
    SUITABILITY,
    VIEWS,
    WINDOWS_DAYS,
    ViewSpec,
    draw_bias_columns,
    resolve_params,
    suitability_columns,
)

logger = logging.getLogger(__name__)

_RECORD_FORBIDDEN = r"[=;/]"


# --------------------------------------------------------------------------------------
# Per-run quantities
# --------------------------------------------------------------------------------------


def _group_codes(frame: pd.DataFrame, keys: list[str]) -> np.ndarray:
    """Integer code per distinct key tuple (-1 where any key is null)."""
    return frame.groupby(keys, sort=True, dropna=True).ngroup().fillna(-1).to_numpy(np.int64)


def _strictly_earlier_mean(
    frame: pd.DataFrame, keys: list[str], value: str
) -> tuple[pd.Series, pd.Series]:
    """Mean and count of ``value`` over rows with the same keys and a strictly earlier off_time.

    Args:
        frame: Rows with ``keys``, ``off_time`` and ``value``.
        keys: Grouping columns.
        value: Column averaged (NaN values are ignored).

    Returns:
        ``(mean, count)`` aligned with ``frame``; mean is NaN when count is 0.
    """
    code = pd.Series(_group_codes(frame, keys), index=frame.index, name="_code")
    valid = (code >= 0) & frame[value].notna()
    hist = (
        pd.DataFrame(
            {
                "_code": code[valid],
                "off_time": frame.loc[valid, "off_time"],
                "_v": frame.loc[valid, value],
            }
        )
        .groupby(["_code", "off_time"], sort=True)["_v"]
        .agg(["sum", "count"])
    )
    hist = hist.groupby(level="_code").cumsum().reset_index().sort_values("off_time", kind="stable")
    query = pd.DataFrame(
        {"_code": code, "off_time": frame["off_time"], "_row": np.arange(len(frame))}
    )
    query = query.sort_values("off_time", kind="stable")
    joined = pd.merge_asof(query, hist, on="off_time", by="_code", allow_exact_matches=False)
    joined = joined.sort_values("_row")
    count = joined["count"].fillna(0).to_numpy(float)
    total = joined["sum"].to_numpy(float)
    mean = np.divide(total, count, out=np.full(len(count), np.nan), where=count > 0)
    return pd.Series(mean, index=frame.index), pd.Series(count, index=frame.index)


def _standard_times(race_level: pd.DataFrame, p: dict[str, Any]) -> pd.Series:
    """Standard time per metre of each race, learned only from strictly earlier races.

    Primary: mean winners' time per metre of earlier races with the same
    (track_key, going group), used once ``std_min_races`` such races exist. Fallback:
    the track_key mean over all goings times a going allowance, the mean ratio
    (winner time / track standard at the time) of earlier races with the same
    (surface, going group) (1.0 before any).

    Args:
        race_level: One row per race with ``track_key``, ``going_group``,
            ``surface_slot``, ``off_time`` and ``win_tpm``.
        p: Resolved parameters.

    Returns:
        Standard seconds per metre aligned with ``race_level`` (NaN if none).
    """
    cell_mean, cell_n = _strictly_earlier_mean(race_level, ["track_key", "going_group"], "win_tpm")
    track_mean, _ = _strictly_earlier_mean(race_level, ["track_key"], "win_tpm")
    with_ratio = race_level.assign(_ratio=race_level["win_tpm"] / track_mean)
    allowance, _ = _strictly_earlier_mean(with_ratio, ["surface_slot", "going_group"], "_ratio")
    fallback = track_mean * allowance.fillna(1.0)
    return cell_mean.where(cell_n >= p["std_min_races"], fallback)


def race_times(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per race of ``runs``: ``track_key``, ``going_group``, ``surface_slot``,
    ``off_time`` and ``win_tpm`` (the race's winning time per metre; NaN when unknown).

    Args:
        runs: Official active runs with ``won`` and the per-run columns of
            :func:`official_runs`.

    Returns:
        The race-level frame, in the order of ``runs``.
    """
    distance = as_float(runs["distance_m"]).where(lambda s: s > 0)
    return pd.DataFrame(
        {
            "race_id": runs["race_id"],
            "track_key": runs["track_key"],
            "going_group": runs["going_group"],
            "surface_slot": runs["surface_slot"],
            "off_time": runs["off_time"],
            "win_tpm": _race_time(runs) / distance,
        }
    ).drop_duplicates("race_id")


def _race_time(runs: pd.DataFrame) -> pd.Series:
    """Winning time of each run's race: ``post_winning_time_s``, else the winner's time."""
    finish = as_float(runs["post_finish_time_s"]).where(lambda s: s > 0)
    winner_time = finish.where(runs["won"] == 1).groupby(runs["race_id"]).transform("min")
    return as_float(runs["post_winning_time_s"]).where(lambda s: s > 0).fillna(winner_time)


def _speed_figures(
    runs: pd.DataFrame, p: dict[str, Any], earlier: pd.DataFrame | None = None
) -> pd.Series:
    """Speed figure of each run: ``scale * (standard - own) / standard`` in time per metre.

    Own time is ``post_finish_time_s``; where missing, the winner's time plus
    ``lengths_behind * sec_per_length`` (lengths clipped at 0, above ``max_lengths``
    unusable). Non-finishers get NaN. Figures are clipped to +-``figure_clip``.

    Args:
        runs: Official active runs with per-run columns (``won``, ``finished``, ...).
        p: Resolved parameters.
        earlier: :func:`race_times` of races run before every race of ``runs`` that
            ``runs`` does not hold (standard times learn from them too); None when
            ``runs`` is the whole history.

    Returns:
        Float Series aligned with ``runs``.
    """
    distance = as_float(runs["distance_m"]).where(lambda s: s > 0)
    finish = as_float(runs["post_finish_time_s"]).where(lambda s: s > 0)
    race_time = _race_time(runs)
    race_level = race_times(runs)
    history = race_level
    if earlier is not None and len(earlier):
        history = pd.concat(
            [earlier[~earlier["race_id"].isin(race_level["race_id"])], race_level],
            ignore_index=True,
        )
    std_tpm = pd.Series(_standard_times(history, p).to_numpy(), index=history["race_id"].to_numpy())
    std = runs["race_id"].map(std_tpm)
    lengths = as_float(runs["post_lengths_behind"]).clip(lower=0)
    lengths = lengths.where(lengths <= p["max_lengths"]).where(runs["won"] == 0, 0.0)
    own = finish.fillna(race_time + lengths * p["sec_per_length"]).where(runs["finished"])
    figure = p["figure_scale"] * (std - own / distance) / std
    return figure.clip(-p["figure_clip"], p["figure_clip"]).astype("float64")


def official_runs(
    races: pd.DataFrame,
    runners: pd.DataFrame,
    p: dict[str, Any],
    earlier: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Active runs of official races with every per-run quantity the state tables need.

    Args:
        races: Canonical races.
        runners: Canonical runners.
        p: Resolved parameters (:func:`racecast.features.specs.resolve_params`).
        earlier: :func:`race_times` of earlier races not in ``races`` (the standard
            times of a speed figure learn from every earlier race); None when ``races``
            is the whole history.

    Returns:
        One row per run, sorted by ``off_time`` and ``race_id``.
    """
    df = _active_runs(races, runners)
    df = df.loc[df["status"].eq("official").to_numpy(bool)].reset_index(drop=True)
    bad = df["course"].astype("string").str.contains(_RECORD_FORBIDDEN, regex=True).fillna(False)
    if bad.any():
        raise ValueError(
            f"races.course: value {df.loc[bad, 'course'].iloc[0]!r} contains one of '=;/'"
        )
    position = as_float(df["post_position"])
    field = df["n_runners"].astype("float64")
    finished = position.notna().to_numpy(bool)
    rel_pos = ((position - 1.0) / np.maximum(field - 1.0, 1.0)).clip(0.0, 1.0).where(finished, 1.0)
    first_pos = as_float(
        df["post_in_running_positions"]
        .astype("string")
        .str.extract(r"^\s*\[\s*(\d+)", expand=False)
    )
    # a graded (group or listed) race without a class is above the classes, not class_ref
    race_class = as_float(df["race_class"])
    race_class = race_class.mask(race_class.isna() & df["race_grade"].notna().to_numpy(bool), 1.0)
    race_class = race_class.clip(1.0, p["class_max"]).fillna(p["class_ref"])
    out = df.assign(
        won=_won(df).astype("int64"),
        finished=finished,
        placed=(position <= 3).fillna(False).astype("int64"),
        rel_pos=rel_pos,
        early_pos=((first_pos - 1.0) / np.maximum(field - 1.0, 1.0)).clip(0.0, 1.0),
        class_perf=(1.0 - rel_pos) + p["class_step"] * (p["class_ref"] - race_class),
        going_group=going_group(df["going"]),
        surface_slot=surface_slot(df["surface"]),
        off_ts=epoch_seconds(df["off_time"]),
    )
    out["figure"] = _speed_figures(out, p, earlier)
    out["perf_rating"] = _performance_ratings(out, p)
    return out


def _performance_ratings(runs: pd.DataFrame, p: dict[str, Any]) -> pd.Series:
    """Performance rating of each run: the rating the horse ran to, in rating units.

    ``PR = field mean rating + (field mean lengths - own lengths) * units_per_length
    + pr_units_per_kg * (own weight - field mean weight)``, where lengths behind are
    clipped to ``[0, max_lengths]`` (winners 0; non-finishers and unusable values count
    as ``max_lengths``) and ``units_per_length = clip(pr_units_per_length_1600m * 1600 /
    distance, pr_unit_min, pr_unit_max)`` (a length is worth more over a shorter trip).
    NaN when the race has no rating, the run no weight, or the race no distance.

    Args:
        runs: Official active runs with ``won``, ``finished`` and the racecard columns.
        p: Resolved parameters.

    Returns:
        Float Series aligned with ``runs``.
    """
    race = runs["race_id"]
    lengths = as_float(runs["post_lengths_behind"]).clip(lower=0.0)
    lengths = lengths.where(lengths <= p["max_lengths"], p["max_lengths"])
    lengths = lengths.where(runs["finished"], p["max_lengths"]).fillna(p["max_lengths"])
    lengths = lengths.where(runs["won"] == 0, 0.0)
    distance = as_float(runs["distance_m"]).where(lambda s: s > 0)
    unit = (p["pr_units_per_length_1600m"] * 1600.0 / distance).clip(
        p["pr_unit_min"], p["pr_unit_max"]
    )
    weight = as_float(runs["weight_carried_kg"])
    rating_mean = as_float(runs["rating"]).groupby(race).transform("mean")
    pr = (
        rating_mean
        + (lengths.groupby(race).transform("mean") - lengths) * unit
        + p["pr_units_per_kg"] * (weight - weight.groupby(race).transform("mean"))
    )
    return pr.astype("float64")


# --------------------------------------------------------------------------------------
# State tables
# --------------------------------------------------------------------------------------


def _sorted_history(runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Runs with non-null keys, sorted by keys, off_time and race_id."""
    mask = runs[keys].notna().all(axis=1)
    return (
        runs.loc[mask]
        .sort_values([*keys, "off_time", "race_id"], kind="stable")
        .reset_index(drop=True)
    )


def _last_per_event(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Keep the last row per (keys, off_time): cumulative state after every race at that time."""
    return frame.loc[~frame.duplicated([*keys, "off_time"], keep="last")].reset_index(drop=True)


def _trailing_mean(values: pd.Series, groups: pd.Series, k: int) -> pd.Series:
    """Mean of the last ``k`` values of each group up to each row (values must not be NaN)."""
    csum = values.groupby(groups, sort=False).cumsum()
    before = csum.groupby(groups, sort=False).shift(k).fillna(0.0)
    count = np.minimum(groups.groupby(groups, sort=False).cumcount() + 1, k)
    return (csum - before) / count


def _figure_history(hist: pd.DataFrame) -> pd.DataFrame:
    """Best, last and mean-of-last-3 figures (runs without a figure carry the last state)."""
    has = hist["figure"].notna()
    sub = hist.loc[has, ["horse_id", "figure"]]
    by = sub["horse_id"]
    figs = pd.DataFrame(
        {
            "h_best_fig": sub["figure"].groupby(by, sort=False).cummax(),
            "h_last_fig": sub["figure"],
            "h_mean3_fig": _trailing_mean(sub["figure"], by, 3),
        },
        index=sub.index,
    ).reindex(hist.index)
    figs = figs.groupby(hist["horse_id"], sort=False).ffill()
    figs["h_fig_runs"] = has.astype("int64").groupby(hist["horse_id"], sort=False).cumsum()
    return figs


def _performance_history(hist: pd.DataFrame, best_runs: int) -> pd.DataFrame:
    """Last, mean-of-last-3 and best-of-last-``best_runs`` performance ratings.

    Runs without a performance rating carry the previous values.
    """
    sub = hist.loc[hist["perf_rating"].notna(), ["horse_id", "perf_rating"]]
    by = sub["horse_id"]
    best = (
        sub["perf_rating"]
        .groupby(by, sort=False)
        .rolling(best_runs, min_periods=1)
        .max()
        .reset_index(level=0, drop=True)
    )
    prs = pd.DataFrame(
        {
            "h_last_pr": sub["perf_rating"],
            "h_mean3_pr": _trailing_mean(sub["perf_rating"], by, 3),
            "h_best5_pr": best.reindex(sub.index),
        },
        index=sub.index,
    ).reindex(hist.index)
    return prs.groupby(hist["horse_id"], sort=False).ffill()


def _suitability_history(hist: pd.DataFrame, by: pd.Series) -> pd.DataFrame:
    """Cumulative runs and wins per suitability category (wide columns)."""
    labels = {
        "dist": distance_band(hist["distance_m"]),
        "going": hist["going_group"],
        "surf": hist["surface_slot"],
        "draw": draw_range(hist["draw"], hist["n_runners"]),
    }
    won = hist["won"].to_numpy(np.int64)[:, None]
    blocks = []
    for kind, cats in SUITABILITY.items():
        codes = category_codes(labels[kind], cats)
        onehot = (codes[:, None] == np.arange(len(cats))[None, :]).astype(np.int64)
        runs_cols, wins_cols = suitability_columns(kind)
        blocks.append(pd.DataFrame(onehot, columns=runs_cols, index=hist.index))
        blocks.append(pd.DataFrame(onehot * won, columns=wins_cols, index=hist.index))
    return pd.concat(blocks, axis=1).groupby(by, sort=False).cumsum()


def _course_record(hist: pd.DataFrame, by: pd.Series) -> pd.Series:
    """Per-course record as text ``"HV=3/0;ST=5/1"`` (runs/wins, courses sorted)."""
    course = hist["course"].astype("string").str.strip()
    courses = sorted(course.dropna().unique())
    codes = category_codes(course, courses)
    onehot = (codes[:, None] == np.arange(len(courses))[None, :]).astype(np.int64)
    runs = pd.DataFrame(onehot, index=hist.index).groupby(by, sort=False).cumsum().to_numpy()
    wins = (
        pd.DataFrame(onehot * hist["won"].to_numpy()[:, None], index=hist.index)
        .groupby(by, sort=False)
        .cumsum()
        .to_numpy()
    )
    record = pd.Series("", index=hist.index, dtype="object")
    for i, name in enumerate(courses):
        piece = (
            pd.Series(f"{name}=", index=hist.index)
            + runs[:, i].astype(str)
            + "/"
            + wins[:, i].astype(str)
            + ";"
        )
        record = record + piece.where(runs[:, i] > 0, "")
    return record.str.rstrip(";").astype("string")


def _horse_state(runs: pd.DataFrame, p: dict[str, Any]) -> pd.DataFrame:
    """Horse form, speed/pace and suitability state after each run."""
    hist = _sorted_history(runs, ["horse_id"])
    by = hist["horse_id"]
    g = hist.groupby(by, sort=False)
    n = g.cumcount() + 1
    wins = g["won"].cumsum()
    places = g["placed"].cumsum()
    avg_rel = g["rel_pos"].cumsum() / n
    ewm = g["rel_pos"].ewm(halflife=p["ewm_halflife_runs"]).mean().reset_index(level=0, drop=True)
    early_n = hist["early_pos"].notna().astype("int64").groupby(by, sort=False).cumsum()
    early_sum = hist["early_pos"].fillna(0.0).groupby(by, sort=False).cumsum()
    state = pd.DataFrame(
        {
            "horse_id": by,
            "off_time": hist["off_time"],
            "h_runs": n,
            "h_wins": wins,
            "h_places": places,
            "h_win_rate": shrunk_rate(wins, n, p["horse_k"], p["win_prior"]),
            "h_place_rate": shrunk_rate(places, n, p["horse_k"], p["place_prior"]),
            "h_avg_rel_pos": avg_rel,
            "h_last_rel_pos": hist["rel_pos"],
            "h_ewm_rel_pos": ewm.reindex(hist.index),
            "h_trend": _trailing_mean(hist["rel_pos"], by, int(p["trend_runs"])) - avg_rel,
            "h_last_off_ts": hist["off_ts"],
            "h_early_pos": (early_sum / early_n).where(early_n > 0),
            "h_class_perf": g["class_perf"].cumsum() / n,
            "h_course_record": _course_record(hist, by),
            "h_last_distance": as_float(hist["distance_m"]),
            "h_last_class": as_float(hist["race_class"]),
            "h_last_weight": as_float(hist["weight_carried_kg"]),
            "h_last_body_weight": as_float(hist["body_weight_kg"]),
            "h_last_rating": as_float(hist["rating"]),
            "h_last_gear": hist["gear"].astype("string"),
        },
        index=hist.index,
    )
    state = pd.concat(
        [
            state,
            _figure_history(hist),
            _performance_history(hist, int(p["pr_best_runs"])),
            _suitability_history(hist, by),
        ],
        axis=1,
    )
    return _last_per_event(state, ["horse_id"])


def _trailing_window_sums(
    codes: np.ndarray, seconds: np.ndarray, values: np.ndarray, window_s: int
) -> np.ndarray:
    """Sum ``values`` over rows of the same code with time in ``(t - window_s, t]``.

    Rows must be sorted by code, then time. Each row only counts itself and earlier rows,
    so the last row of a (code, time) block holds the whole block.

    Args:
        codes: Group code per row (non-decreasing).
        seconds: Integer epoch seconds per row (non-decreasing within a code).
        values: 2-D array (rows x columns) to sum.
        window_s: Window length in seconds.

    Returns:
        2-D array of window sums.
    """
    if len(codes) == 0:
        return np.zeros_like(values)
    rel = seconds - seconds.min()
    stride = int(rel.max()) + window_s + 2
    composite = codes * stride + rel
    start = np.searchsorted(composite, composite - window_s, side="right")
    csum = np.vstack(
        [np.zeros((1, values.shape[1]), dtype=values.dtype), np.cumsum(values, axis=0)]
    )
    return csum[np.arange(1, len(codes) + 1)] - csum[start]


def _connection_state(
    runs: pd.DataFrame, key: str, prefix: str, recent: int, p: dict[str, Any]
) -> pd.DataFrame:
    """Jockey or trainer career, trailing 30/90/365-day strike rates and the mean
    ``rel_pos`` of the latest ``recent`` rides, after each ride."""
    hist = _sorted_history(runs, [key])
    by = hist[key]
    g = hist.groupby(by, sort=False)
    n = g.cumcount() + 1
    wins = g["won"].cumsum()
    state = {
        key: by,
        "off_time": hist["off_time"],
        f"{prefix}_runs": n,
        f"{prefix}_wins": wins,
        f"{prefix}_win_rate": shrunk_rate(wins, n, p["connection_k"], p["win_prior"]),
        f"{prefix}_recent_rel_pos": _trailing_mean(hist["rel_pos"], by, recent).where(
            n >= p["recent_min_rides"]
        ),
    }
    codes = g.ngroup().to_numpy(np.int64)
    seconds = np.floor(hist["off_ts"].to_numpy()).astype(np.int64)
    values = np.column_stack([np.ones(len(hist), dtype=np.int64), hist["won"].to_numpy(np.int64)])
    for days in WINDOWS_DAYS:
        sums = _trailing_window_sums(codes, seconds, values, days * 86400)
        runs_w = pd.Series(sums[:, 0], index=hist.index)
        wins_w = pd.Series(sums[:, 1], index=hist.index)
        state[f"{prefix}_runs_{days}d"] = runs_w
        state[f"{prefix}_wins_{days}d"] = wins_w
        state[f"{prefix}_rate_{days}d"] = shrunk_rate(
            wins_w, runs_w, p["connection_k"], p["win_prior"]
        )
    return _last_per_event(pd.DataFrame(state, index=hist.index), [key])


def _pair_state(
    runs: pd.DataFrame, keys: list[str], prefix: str, p: dict[str, Any]
) -> pd.DataFrame:
    """Runs and wins of an entity pair together (jockey x trainer, horse x jockey)."""
    hist = _sorted_history(runs, keys)
    g = hist.groupby(keys, sort=False)
    n = g.cumcount() + 1
    wins = g["won"].cumsum()
    state = hist[[*keys, "off_time"]].assign(
        **{
            f"{prefix}_runs": n,
            f"{prefix}_wins": wins,
            f"{prefix}_win_rate": shrunk_rate(wins, n, p["pair_k"], p["win_prior"]),
            f"{prefix}_avg_rel_pos": g["rel_pos"].cumsum() / n,
        }
    )
    return _last_per_event(state, keys)


def _track_state(runs: pd.DataFrame, p: dict[str, Any]) -> pd.DataFrame:
    """Draw bias per track_key: shrunk ratio of wins to expected wins (1/field) per draw."""
    hist = _sorted_history(runs, ["track_key"])
    slot = as_float(hist["draw"]).clip(upper=DRAW_SLOTS)
    onehot = (slot.to_numpy()[:, None] == np.arange(1, DRAW_SLOTS + 1)[None, :]).astype(float)
    cols = draw_bias_columns()
    wins = pd.DataFrame(
        onehot * hist["won"].to_numpy(float)[:, None], columns=cols, index=hist.index
    )
    expected = pd.DataFrame(
        onehot / hist["n_runners"].to_numpy(float)[:, None], columns=cols, index=hist.index
    )
    keys = [hist["track_key"], hist["off_time"]]
    wins_cum = wins.groupby(keys, sort=True).sum().groupby(level=0).cumsum()
    expected_cum = expected.groupby(keys, sort=True).sum().groupby(level=0).cumsum()
    races = hist.groupby(keys, sort=True)["race_id"].nunique().groupby(level=0).cumsum()
    k = p["draw_bias_k"]
    bias = (wins_cum + k) / (expected_cum + k)
    bias.insert(0, "trk_races", races)
    return bias.reset_index()


def _finalise(frame: pd.DataFrame, spec: ViewSpec, delay: pd.Timedelta) -> pd.DataFrame:
    """Select the view's columns, cast dtypes, stamp event_timestamp and check uniqueness."""
    keys = list(spec.entities)
    missing = [c for c in spec.features if c not in frame.columns]
    if missing:
        raise KeyError(f"state table {spec.name}: computed frame lacks feature column(s) {missing}")
    out = frame[keys].astype("string")
    out["event_timestamp"] = frame["off_time"] + delay
    for col, dtype in spec.features.items():
        out[col] = frame[col].astype(dtype)
    out = out.sort_values(["event_timestamp", *keys], kind="stable").reset_index(drop=True)
    dup = out.duplicated([*keys, "event_timestamp"])
    if dup.any():
        raise AssertionError(
            f"state table {spec.name}: {int(dup.sum())} duplicate rows per ({', '.join(keys)}, event_timestamp)"
        )
    return out


def post_race_delay(p: dict[str, Any]) -> pd.Timedelta:
    """``post_race_delay_s`` as a Timedelta (a race's state is stamped this long after its off)."""
    delay = pd.Timedelta(seconds=float(p["post_race_delay_s"]))
    if delay <= pd.Timedelta(0):
        raise ValueError(
            f"post_race_delay_s: must be > 0 so a race never sees its own result, got {p['post_race_delay_s']}"
        )
    return delay


def view_state(view: str, runs: pd.DataFrame, p: dict[str, Any]) -> pd.DataFrame:
    """The state table of one feature view from official runs.

    Each entity's rows depend only on the runs of that entity (and the per-run columns
    :func:`official_runs` computed), so the rows of a few entities can be computed from
    those entities' runs alone, equal to the whole table's rows for them.

    Args:
        view: Feature view name (a key of ``VIEWS``).
        runs: :func:`official_runs` output (the whole history, or every run of the
            entities wanted).
        p: Resolved parameters.

    Returns:
        The view's entity keys, ``event_timestamp`` (UTC) and features, one row per
        (entity keys, event_timestamp).
    """
    if view == "horse_form":
        frame = _horse_state(runs, p)
    elif view in ("jockey_form", "trainer_form"):
        key, prefix = ("jockey_id", "j") if view == "jockey_form" else ("trainer_id", "t")
        frame = _connection_state(runs, key, prefix, int(p[f"{view.split('_')[0]}_recent_rides"]), p)
    elif view == "jockey_trainer_form":
        frame = _pair_state(runs, ["jockey_id", "trainer_id"], "jt", p)
    elif view == "horse_jockey_form":
        frame = _pair_state(runs, ["horse_id", "jockey_id"], "hj", p)
    elif view == "track_profile":
        frame = _track_state(runs, p)
    else:
        raise KeyError(f"no state table for feature view {view!r} (have {sorted(VIEWS)})")
    return _finalise(frame, VIEWS[view], post_race_delay(p))


def build_state_tables(
    races: pd.DataFrame, runners: pd.DataFrame, params: dict[str, Any] | None = None
) -> dict[str, pd.DataFrame]:
    """Build one post-race state table per feature view.

    Only active runners of official races contribute; void and pending races,
    non-runners and runners that took no part add no state. Each row is the entity's
    state INCLUDING that race's result, stamped
    ``event_timestamp = off_time + post_race_delay_s``.

    Args:
        races: Canonical races table.
        runners: Canonical runners table.
        params: Overrides of ``specs.DEFAULT_PARAMS``.

    Returns:
        View name -> frame with the view's entity keys, ``event_timestamp`` (UTC) and
        features, one row per (entity keys, event_timestamp).
    """
    p = resolve_params(params)
    post_race_delay(p)
    runs = official_runs(races, runners, p)
    tables = {name: view_state(name, runs, p) for name in VIEWS}
    logger.info(
        "state tables from %d official runs: %s",
        len(runs),
        ", ".join(f"{name}={len(t)}" for name, t in tables.items()),
    )
    return tables
