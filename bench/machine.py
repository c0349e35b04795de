"""What a benchmark ran on, printed beside its figures."""

from __future__ import annotations

import os
import platform

import psutil


def describe_machine() -> str:
    memory_gib = psutil.virtual_memory().total / 2**30
    return (
        f"machine: {_cpu_model()}, {os.cpu_count()} cores, {memory_gib:.0f} GiB, "
        f"{platform.system()} {platform.release()}, "
        f"Python {platform.python_version()} ({platform.python_implementation()})"
    )


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"
