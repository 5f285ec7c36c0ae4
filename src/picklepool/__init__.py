"""picklepool: joblib-style parallel calls on warm workers, with a pluggable pickler.

from picklepool import Parallel, delayed
Parallel(n_jobs=2)(delayed(pow)(x, 2) for x in range(10))
"""

from .config import parallel_config as parallel_config
from .errors import PicklingError as PicklingError
from .errors import StateFileError as StateFileError
from .errors import StateSignatureError as StateSignatureError
from .errors import TaskTimeoutError as TaskTimeoutError
from .errors import WorkerCrashedError as WorkerCrashedError
from .executor import Parallel as Parallel
from .executor import cpu_count as cpu_count
from .executor import delayed as delayed
from .executor import shutdown as shutdown
from .pickler import register_pickler as register_pickler
from .pickler import wrap_non_picklable_objects as wrap_non_picklable_objects
from .state import SharedState as SharedState

__version__ = "0.1.0"

__all__ = [
    "Parallel",
    "PicklingError",
    "SharedState",
    "StateFileError",
    "StateSignatureError",
    "TaskTimeoutError",
    "WorkerCrashedError",
    "cpu_count",
    "delayed",
    "parallel_config",
    "register_pickler",
    "shutdown",
    "wrap_non_picklable_objects",
]
