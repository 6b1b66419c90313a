"""Facts about a process from Linux's /proc: limits, open files, memory, sockets."""

from __future__ import annotations

import os
import resource
from collections import Counter

from bench.cpu import process_cpu_seconds


def raise_open_file_limit() -> tuple[int, int]:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; return both.

    Processes started afterwards inherit the raised limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return int(soft), int(hard)


def open_file_limit(pid: int) -> int | None:
    """Return the soft "Max open files" of process ``pid``, None if unlimited."""
    with open(f"/proc/{pid}/limits") as limits:
        for line in limits:
            if line.startswith("Max open files"):
                soft = line.split()[3]
                return None if soft == "unlimited" else int(soft)
    raise RuntimeError(f"/proc/{pid}/limits has no 'Max open files' line")


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def resident_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def read_number(path: str) -> int:
    """Return the first number in a file such as /proc/sys/net/core/somaxconn."""
    with open(path) as file:
        return int(file.read().split()[0])


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def connections_to(pid: int, ports: dict[str, int]) -> dict[str, int]:
    """Count the TCP connections of ``pid`` to each named remote port."""
    inodes = socket_inodes(pid)
    names = {port: name for name, port in ports.items()}
    counts: Counter[str] = Counter(dict.fromkeys(ports, 0))
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as lines:
                next(lines)
                for line in lines:
                    fields = line.split()
                    remote_port = int(fields[2].rpartition(":")[2], 16)
                    if remote_port in names and fields[9] in inodes:
                        counts[names[remote_port]] += 1
        except FileNotFoundError:
            continue
    return dict(counts)


def database_backends(database: str) -> dict[int, float]:
    """Return the CPU seconds of each PostgreSQL backend serving ``database``.

    Backends name their database in their process title ("postgres: 15/main:
    <user> <database> <client> <state>"), so only a server on this machine,
    visible in /proc, is found.
    """
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                title = cmdline.read().decode(errors="replace")
            if title.startswith("postgres:") and f" {database} " in title:
                found[int(entry)] = process_cpu_seconds(int(entry))
        except OSError:
            continue
    return found
