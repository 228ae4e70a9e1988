"""What a server process holds, read from ``/proc`` (Linux): resident memory and open descriptors."""

from __future__ import annotations

import os
from pathlib import Path


def rss_mb(pid: int) -> float:
    """Resident set size in MiB (``VmRSS``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def open_fds(pid: int) -> int:
    """File descriptors the process has open (sockets, database files, pipes)."""
    return len(os.listdir(f"/proc/{pid}/fd"))
