"""The machine and software a run happens on: for ``picklepool info`` and the JSON record."""

from __future__ import annotations

import datetime
import importlib.metadata
import importlib.util
import multiprocessing
import os
import platform
import shutil
import sys
from typing import Any

CORE = ("loky", "cloudpickle", "psutil")
EXTRAS = ("numpy", "tqdm", "threadpoolctl", "dask", "joblib", "matplotlib")


def version_of(dist: str) -> str | None:
    """The installed version of a distribution, or None when it is not importable."""
    if importlib.util.find_spec(dist) is None:
        return None
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        module = __import__(dist)
        return str(getattr(module, "__version__", "unknown"))


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def shm_space() -> dict[str, Any] | None:
    """Free and total bytes of /dev/shm, where picklepool puts its session folder."""
    if not os.path.isdir("/dev/shm"):
        return None
    usage = shutil.disk_usage("/dev/shm")
    return {"path": "/dev/shm", "free_bytes": usage.free, "total_bytes": usage.total}


def pickler_in_force() -> dict[str, str]:
    """The pickler a ``Parallel`` call without ``pickler=`` would use, and why."""
    from picklepool.pickler import resolve_pickler

    try:
        pickler, source = resolve_pickler(None)
    except ValueError as exc:
        return {"error": str(exc)}
    return {"name": pickler.name, "source": source}


def start_methods() -> dict[str, str]:
    from loky.backend.context import get_context

    return {
        "picklepool (loky)": get_context().get_start_method(),
        "multiprocessing": multiprocessing.get_start_method(),
    }


def collect() -> dict[str, Any]:
    """Everything worth recording next to benchmark numbers."""
    import psutil

    import picklepool

    versions: dict[str, str | None] = {"picklepool": picklepool.__version__}
    versions.update({name: version_of(name) for name in CORE + EXTRAS})
    try:
        load: list[float] | None = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "os_cpu_count": os.cpu_count(),
        "usable_cores": picklepool.cpu_count(),
        "memory_total_bytes": psutil.virtual_memory().total,
        "load_average": load,
        "versions": versions,
        "picklepool_location": os.path.dirname(os.path.abspath(picklepool.__file__)),
        "pickler": pickler_in_force(),
        "start_method": start_methods(),
        "dev_shm": shm_space(),
    }
