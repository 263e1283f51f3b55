"""What the load benches read from the processes they start: CPU seconds and RSS from /proc,
Redis command counts (INFO commandstats) and memory. Linux only, like the benches."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import redis

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants (a prefork worker's pool children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        found = subprocess.run(["pgrep", "-P", str(p)], capture_output=True, text=True)
        todo += [int(c) for c in found.stdout.split()]
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (its reaped children are not counted: the benches read
    every live process of a tree instead)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def tree_cpu(pid: int) -> float:
    return sum(cpu_seconds(p) for p in tree(pid))


def rss_mb(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return 0.0
    kb = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS")), 0)
    return kb / 1024


def commands(client: redis.Redis) -> dict[str, int]:
    """Calls per Redis command since the server started (``INFO commandstats``)."""
    stats: dict[str, Any] = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def command_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    return {k: v for k, v in sorted(delta.items(), key=lambda kv: -kv[1]) if v}


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def write_results(path: Path, **figures: Any) -> None:
    """The bench's figures as JSON, with the command line and the machine they came from."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "load_average_end": os.getloadavg()[0],
        **figures,
    }
    path.write_text(json.dumps(meta, indent=1) + "\n")
