"""What every benchmark report says about its machine: :func:`machine`.

The same code ran two to four times faster on one 2-core host than on another
(docs/results.md, fourth round), so a report names the processor beside the cores:
compare figures only between reports of the same machine.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

CPUINFO = Path("/proc/cpuinfo")


def cpu_model(cpuinfo: Path = CPUINFO) -> str | None:
    """The processor's name, family and model from ``/proc/cpuinfo`` (``"AMD EPYC
    (family 26, model 2)"``), or ``platform.processor()`` where there is no such file;
    None when neither says."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or None
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break  # the first processor's block is enough
        name, _, value = line.partition(":")
        fields.setdefault(name.strip(), value.strip())
    name = fields.get("model name") or platform.processor() or None
    if name and "cpu family" in fields and "model" in fields:
        return f"{name} (family {fields['cpu family']}, model {fields['model']})"
    return name


def memory_gib() -> float | None:
    """Physical memory in GiB (None where ``os.sysconf`` cannot tell)."""
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (AttributeError, OSError, ValueError):
        return None


def machine(**extra: Any) -> dict[str, Any]:
    """The report's ``machine``: Python, platform, cores, processor and memory, plus
    ``extra`` (a benchmark's load averages, say)."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_gib": memory_gib(),
        **extra,
    }
