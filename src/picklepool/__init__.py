"""picklepool: joblib-style parallel calls on warm workers, with a pluggable pickler.

from picklepool import Parallel, delayed
Parallel(n_jobs=2)(delayed(pow)(x, 2) for x in range(10))

The public names are imported on first use (as ``concurrent.futures`` does), so
that a worker process, which imports ``picklepool.workers`` to run batches, never
loads the front end (``picklepool.executor``) or the benchmark.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_WHERE = {
    "Executor": "picklepool.executor.futures",
    "Parallel": "picklepool.executor.parallel",
    "delayed": "picklepool.executor.delayed",
    "effective_n_jobs": "picklepool.executor.parallel",
    "shutdown": "picklepool.executor.backends",
    "cpu_count": "picklepool.settings",
    "parallel_config": "picklepool.config",
    "parallel_backend": "picklepool.config",
    "PicklingError": "picklepool.errors",
    "StateFileError": "picklepool.errors",
    "StateSignatureError": "picklepool.errors",
    "TaskExitError": "picklepool.errors",
    "TaskTimeoutError": "picklepool.errors",
    "WorkerCrashedError": "picklepool.errors",
    "register_joblib_backend": "picklepool.joblib",
    "register_pickler": "picklepool.pickler.registry",
    "wrap_non_picklable_objects": "picklepool.pickler.wrap",
    "SharedState": "picklepool.state",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'picklepool' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups do not come here again
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from .config import parallel_backend as parallel_backend
    from .config import parallel_config as parallel_config
    from .errors import PicklingError as PicklingError
    from .errors import StateFileError as StateFileError
    from .errors import StateSignatureError as StateSignatureError
    from .errors import TaskExitError as TaskExitError
    from .errors import TaskTimeoutError as TaskTimeoutError
    from .errors import WorkerCrashedError as WorkerCrashedError
    from .executor.backends import shutdown as shutdown
    from .executor.delayed import delayed as delayed
    from .executor.futures import Executor as Executor
    from .executor.parallel import Parallel as Parallel
    from .executor.parallel import effective_n_jobs as effective_n_jobs
    from .joblib import register_joblib_backend as register_joblib_backend
    from .pickler.registry import register_pickler as register_pickler
    from .pickler.wrap import wrap_non_picklable_objects as wrap_non_picklable_objects
    from .settings import cpu_count as cpu_count
    from .state import SharedState as SharedState
