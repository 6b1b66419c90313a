"""The machine, software versions and commit that a run's figures belong to."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import asyncpg
from redis.asyncio import Redis

PACKAGES = ("litestar", "uvicorn", "websockets", "piccolo", "asyncpg", "redis")


def cpu_model() -> str:
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def memory_bytes() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def operating_system() -> str:
    try:
        with open("/etc/os-release") as release:
            for line in release:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def git_commit(repository: Path) -> dict[str, Any]:
    """Return the checked-out commit and whether the working tree has changes."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=repository, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        return {
            "commit": git("rev-parse", "HEAD"),
            "uncommitted_changes": bool(git("status", "--porcelain")),
        }
    except (OSError, subprocess.CalledProcessError) as error:
        return {"commit": None, "error": str(error)}


async def describe_machine(database_url: str, redis_url: str) -> dict[str, Any]:
    connection = await asyncpg.connect(database_url)
    try:
        postgres = await connection.fetchval("SHOW server_version")
    finally:
        await connection.close()

    redis = Redis.from_url(redis_url)
    try:
        redis_info = await redis.info("server")
    finally:
        await redis.aclose()

    return {
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "memory_gib": round(memory_bytes() / 2**30, 1),
        "kernel": platform.release(),
        "os": operating_system(),
        "python": platform.python_version(),
        "postgresql": postgres,
        "redis": redis_info.get("redis_version"),
        "packages": {name: metadata.version(name) for name in PACKAGES},
    }


def load_average() -> float:
    """Return the 1-minute load average, to show what else the machine ran."""
    return round(os.getloadavg()[0], 2)
