"""CPython 3.11's Lib/test/test_concurrent_futures.py with picklepool.Executor as ProcessPoolExecutor.

The pristine CPython file is copied next to this one by run.sh. Nothing in it is
edited; this module imports it and changes only which class `ProcessPoolExecutor` is:
  * the three ProcessPool*Mixin.executor_type -> picklepool.Executor
  * the module's `futures` name -> a copy of concurrent.futures whose ProcessPoolExecutor
    is picklepool.Executor (tests that call futures.ProcessPoolExecutor(...) directly)
  * assert_python_ok (the subprocess tests): `from concurrent.futures import Executor`
    -> `from picklepool import Executor`, `from test.test_concurrent_futures import`
    -> `from test_concurrent_futures import` with PYTHONPATH set to this folder.
Collected: every ProcessPool* test class and FutureTests (ThreadPool* are left out).
"""

import os
import sys
import types
import unittest
import concurrent.futures as cf

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import picklepool  # noqa: E402
import test_concurrent_futures as T  # noqa: E402

shim = types.ModuleType("concurrent.futures")
shim.__dict__.update({k: v for k, v in vars(cf).items() if not k.startswith("__")})
shim.ProcessPoolExecutor = picklepool.Executor
T.futures = shim
for mixin in (T.ProcessPoolForkMixin, T.ProcessPoolSpawnMixin, T.ProcessPoolForkserverMixin):
    mixin.executor_type = picklepool.Executor

_assert_python_ok = T.assert_python_ok


def assert_python_ok(*args, **env):
    args = list(args)
    for i, a in enumerate(args):
        if isinstance(a, str) and "import" in a:
            a = a.replace("from concurrent.futures import Executor", "from picklepool import Executor")
            a = a.replace("from test.test_concurrent_futures import", "from test_concurrent_futures import")
            args[i] = a
    # (this folder, then the caller's PYTHONPATH: a checkout's src the run was pointed at)
    env.setdefault("PYTHONPATH", os.pathsep.join(p for p in (HERE, os.environ.get("PYTHONPATH")) if p))
    return _assert_python_ok(*args, **env)


T.assert_python_ok = assert_python_ok

for _name, _obj in list(vars(T).items()):
    if isinstance(_obj, type) and issubclass(_obj, unittest.TestCase):
        if _name.startswith("ProcessPool") or _name == "FutureTests":
            globals()[_name] = _obj
del _name, _obj
