"""The Hong Kong CSV format (Kaggle ``gdaley/hkracing``): files, columns, codes and units.

The constants ``racecast.ingestion.hkjc`` maps the files with: file names and folder,
the venues' first post times, unit conversions and caps, the source's codes (surface,
``horse_type``, unexplained race classes), the required columns of ``races.csv`` and
``runs.csv``, the source columns known only after the race
(:data:`HKJC_POST_RACE_COLUMNS`) and :func:`raw_path` for messages. The mapping itself
is documented in ``hkjc``.
"""

from __future__ import annotations

SOURCE = "hkjc"
RAW_DIR = "data/01_raw/hkjc"
RACES_FILE = "races.csv"
RUNS_FILE = "runs.csv"
COUNTRY = "HK"
RACE_TYPE = "flat"
STATUS_OFFICIAL = "official"

LOCAL_TZ = "Asia/Hong_Kong"
FIRST_POST_LOCAL: dict[str, str] = {"ST": "12:30", "HV": "18:45"}
MINUTES_BETWEEN_RACES = 30

LB_TO_KG = 0.45359237
ODDS_CAP = 99.0
LENGTHS_DID_NOT_FINISH = 999.0
NO_GEAR = "--"
SURFACE_CODES: dict[int, str] = {0: "turf", 1: "dirt"}
HORSE_TYPE_SEX: dict[str, str] = {
    "Gelding": "gelding",
    "Horse": "horse",
    "Colt": "colt",
    "Mare": "mare",
    "Rig": "rig",
    "Filly": "filly",
}
COAT_COLOURS: tuple[str, ...] = ("Brown", "Roan", "Grey")
RACE_CLASS_UNEXPLAINED: tuple[int, ...] = (0, 6, 11, 12, 13)

N_SECTIONS_RUNS = 6
N_SECTIONS_RACES = 7
POSITION_COLUMNS: tuple[str, ...] = tuple(f"position_sec{i}" for i in range(1, N_SECTIONS_RUNS + 1))

RACES_REQUIRED_COLUMNS: tuple[str, ...] = (
    "race_id",
    "date",
    "venue",
    "race_no",
    "config",
    "surface",
    "distance",
    "going",
    "horse_ratings",
    "prize",
    "race_class",
)
RUNS_REQUIRED_COLUMNS: tuple[str, ...] = (
    "race_id",
    "horse_no",
    "horse_id",
    "result",
    "won",
    "lengths_behind",
    "horse_age",
    "horse_country",
    "horse_type",
    "horse_rating",
    "horse_gear",
    "declared_weight",
    "actual_weight",
    "draw",
    *POSITION_COLUMNS,
    "finish_time",
    "win_odds",
    "trainer_id",
    "jockey_id",
)

# Source columns known only after the race. They may only feed post_* columns or be
# dropped (result -> post_position, won -> post_won, lengths_behind ->
# post_lengths_behind/post_outcome, position_sec* -> post_in_running_positions,
# finish_time -> post_finish_time_s and races.post_winning_time_s; the rest is dropped).
HKJC_POST_RACE_COLUMNS: dict[str, tuple[str, ...]] = {
    RUNS_FILE: (
        "result",
        "won",
        "lengths_behind",
        *POSITION_COLUMNS,
        *(f"behind_sec{i}" for i in range(1, N_SECTIONS_RUNS + 1)),
        *(f"time{i}" for i in range(1, N_SECTIONS_RUNS + 1)),
        "finish_time",
    ),
    RACES_FILE: (
        *(f"sec_time{i}" for i in range(1, N_SECTIONS_RACES + 1)),
        *(f"time{i}" for i in range(1, N_SECTIONS_RACES + 1)),
        *(f"place_combination{i}" for i in range(1, 5)),
        *(f"place_dividend{i}" for i in range(1, 5)),
        *(f"win_combination{i}" for i in range(1, 3)),
        *(f"win_dividend{i}" for i in range(1, 3)),
    ),
}


def raw_path(file: str) -> str:
    """Return the project-relative path of a raw Hong Kong file, for error messages.

    Args:
        file: File name, ``races.csv`` or ``runs.csv``.

    Returns:
        The path under ``data/01_raw/hkjc``.
    """
    return f"{RAW_DIR}/{file}"
