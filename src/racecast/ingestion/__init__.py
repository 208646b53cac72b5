"""Source adapters (racecard JSON, Hong Kong CSVs) and validation into canonical tables.

Every adapter returns the same four things, consumed by the shared validation step:

* ``parsed_races``: races in canonical columns (``racecast.data.schema.RACE_COLUMNS``);
* ``parsed_runners``: runners in canonical columns (``RUNNER_COLUMNS``), results merged in;
* ``parsed_quarantine``: records the adapter already rejected (``QUARANTINE_COLUMNS``);
* ``parse_summary``: ``{"files_read": n, "files_rejected": [{"file", "error"}],
  "races_in": n, "runners_in": n}`` counting every record seen in the input.
"""
