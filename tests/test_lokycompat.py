"""loky's private API, used only through picklepool.lokycompat: pinned to the versions read."""

from __future__ import annotations

import loky
import loky.process_executor as pe

from picklepool import lokycompat


def test_the_installed_loky_is_one_whose_private_api_was_checked():
    major_minor = ".".join(loky.__version__.split(".")[:2])
    assert major_minor in lokycompat.CHECKED, (
        f"loky {loky.__version__} is newer than the versions picklepool.lokycompat was checked "
        f"against {lokycompat.CHECKED}: read its uses of loky's private API again, then add it"
    )


def test_the_private_names_it_uses_exist():
    assert lokycompat.supports_recycling(pe)
    assert hasattr(pe, "_CURRENT_DEPTH")
    executor = loky.get_reusable_executor(max_workers=1, context=lokycompat.start_method())
    executor.submit(abs, -1).result()
    assert len(lokycompat.worker_processes(executor)) == 1
    assert lokycompat.depth() == 0
    assert lokycompat.recycle_after_batch() is False  # not a loky worker
    executor.shutdown(wait=True)
