"""The front end and the backends: Parallel, delayed, batching, dispatch."""

from .backends import cpu_count, shutdown
from .delayed import delayed
from .parallel import Parallel

__all__ = ["Parallel", "cpu_count", "delayed", "shutdown"]
