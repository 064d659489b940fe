"""What the machine offers this process."""

from __future__ import annotations

import os


def available_cores() -> int:
    """Cores this process may run on (CPU affinity / container limits), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1
