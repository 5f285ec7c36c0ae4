"""The archive formats the parent registered in shutil reach the workers (workers.archiveformats)."""

from __future__ import annotations

import os
import shutil

import pytest

from picklepool import Executor, Parallel, delayed
from picklepool.workers import archiveformats


def _unpack_upper(filename, extract_dir):
    """A format of the program's own (as py7zr's unpack_7zarchive): the file, upper-cased."""
    with open(filename) as src, open(os.path.join(extract_dir, "out.txt"), "w") as dst:
        dst.write(src.read().upper())


def _pack_upper(base_name, base_dir, **_):
    return base_name + ".up"


@pytest.fixture
def registered():
    shutil.register_unpack_format("upper", [".up"], _unpack_upper)
    shutil.register_archive_format("upper", _pack_upper)
    yield
    for unregister in (shutil.unregister_unpack_format, shutil.unregister_archive_format):
        try:
            unregister("upper")
        except KeyError:
            pass


def _extract(path, folder):
    """What a task gets from ``shutil.unpack_archive``: the extracted text, or the error."""
    try:
        shutil.unpack_archive(path, folder)
    except shutil.ReadError as exc:
        return f"ReadError: {exc}"
    with open(os.path.join(folder, "out.txt")) as f:
        return f.read()


def _formats(_=None):
    unpack, archive = shutil.get_unpack_formats(), shutil.get_archive_formats()
    return "upper" in [f[0] for f in unpack], "upper" in [f[0] for f in archive]


def test_a_task_unpacks_an_archive_of_a_format_the_script_registered_as_in_the_loop(tmp_path):
    archive = tmp_path / "data.up"
    archive.write_text("hello")
    folders = [tmp_path / str(i) for i in range(3)]
    for folder in folders:
        folder.mkdir()
    with Executor(max_workers=1) as ex:
        assert ex.submit(_extract, archive, folders[0]).result().startswith("ReadError")
        # the script's register_unpack_format, after the workers started: a warm worker
        # raised "Unknown archive format" (as under joblib)
        shutil.register_unpack_format("upper", [".up"], _unpack_upper)
        try:
            loop = _extract(archive, folders[1])
            assert loop == "HELLO"
            assert ex.submit(_extract, archive, folders[2]).result() == loop
            assert Parallel(n_jobs=2)(delayed(_formats)() for _ in range(2)) == [(True, False)] * 2
        finally:
            shutil.unregister_unpack_format("upper")
        assert ex.submit(_formats).result() == (False, False)  # (taken back)


def _unregister(_=None):
    shutil.unregister_unpack_format("upper")
    shutil.unregister_archive_format("upper")


def test_a_tasks_own_unregistering_is_its_batchs(registered):
    with Executor(max_workers=1) as ex:
        ex.submit(_unregister).result()
        assert ex.submit(_formats).result() == (True, True)


def test_pickled_sends_only_the_programs_own_formats(registered):
    data = archiveformats.pickled()
    assert data is not None and archiveformats.pickled() is data  # (kept while unchanged)
    shutil.unregister_unpack_format("upper")
    shutil.unregister_archive_format("upper")
    assert archiveformats.pickled() is None  # (shutil's own: the worker has them)
