"""pytest plugin: picklepool as joblib's default backend for a whole test session.

``-p pp_default_backend`` (with this folder on ``PYTHONPATH``) registers picklepool's
joblib backend with ``make_default=True``: every ``joblib.Parallel`` that names no
backend (scikit-learn's ``n_jobs=`` everywhere) runs on picklepool's workers. At the
end it prints how many ``Parallel`` calls configured the backend, and fails the
session if none did (the tests would then not have run on picklepool).
"""

from __future__ import annotations

from typing import Any

_configured = [0]


def pytest_configure(config: Any) -> None:
    from joblib.parallel import register_parallel_backend

    from picklepool.joblib import PicklepoolBackend

    real = PicklepoolBackend.configure

    def configure(self: Any, *args: Any, **kwargs: Any) -> Any:
        _configured[0] += 1
        return real(self, *args, **kwargs)

    PicklepoolBackend.configure = configure
    register_parallel_backend("picklepool", PicklepoolBackend, make_default=True)


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    print(f"\njoblib.Parallel calls run on picklepool's backend: {_configured[0]}")
    if not _configured[0] and exitstatus == 0:
        session.exitstatus = 1
