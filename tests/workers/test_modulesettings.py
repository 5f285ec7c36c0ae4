"""Libraries' settings that are module attributes reach the workers (workers.modulesettings)."""

from __future__ import annotations

import http.client
import io
import pickle
import sys

import pytest

from picklepool import Executor, Parallel, delayed
from picklepool.workers import modulesettings

from ..conftest import outcome

Image = pytest.importorskip("PIL.Image")
ImageFile = pytest.importorskip("PIL.ImageFile")
PngImagePlugin = pytest.importorskip("PIL.PngImagePlugin")
mpmath = pytest.importorskip("mpmath")

DEFAULT_PIXELS = Image.MAX_IMAGE_PIXELS


@pytest.fixture
def defaults():
    yield
    Image.MAX_IMAGE_PIXELS = DEFAULT_PIXELS
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    PngImagePlugin.MAX_TEXT_CHUNK = 1024 * 1024
    http.client._MAXHEADERS = 100
    mpmath.mp.dps = 15
    mpmath.mp.pretty = False


@pytest.fixture
def images(tmp_path):
    """A 100x100 PNG with a compressed text chunk of 2,000 characters, and a 32x32 JPEG cut
    short (as a download that stopped)."""
    png, jpeg = tmp_path / "small.png", tmp_path / "cut.jpg"
    info = PngImagePlugin.PngInfo()
    info.add_text("note", "x" * 2000, zip=True)
    Image.new("RGB", (100, 100), "red").save(png, pnginfo=info)
    data = io.BytesIO()
    Image.effect_noise((32, 32), 50).convert("RGB").save(data, "JPEG")
    jpeg.write_bytes(data.getvalue()[: len(data.getvalue()) * 2 // 3])
    return str(png), str(jpeg)


def _outcomes(png, jpeg):
    """What a task gets from each setting: a value, or its error's name."""
    out = {}

    def attempt(key, fn):
        out[key] = outcome(fn)

    attempt("bomb check", lambda: Image.open(png).size)

    def text():
        image = Image.open(png)
        image.load()
        return len(image.text["note"])

    attempt("text chunk", text)
    attempt("truncated", lambda: Image.open(jpeg).load() is not None)
    attempt("headers", lambda: len(http.client.parse_headers(io.BytesIO(b"X-A: 1\r\n" * 150 + b"\r\n"))))
    out["mpmath"] = str(mpmath.mpf(1) / 3)
    return out


def test_a_task_runs_with_the_library_settings_the_program_assigned(defaults, images):
    with Executor(max_workers=1) as ex:
        before = ex.submit(_outcomes, *images).result()
        assert before == _outcomes(*images)  # the defaults, on both sides
        assert before["truncated"] == "OSError" and before["headers"] == "HTTPException"
        assert before["text chunk"] == 2000
        # what scripts write at their top (here after the workers started: a warm
        # worker, as a new one, imports the libraries with their defaults)
        Image.MAX_IMAGE_PIXELS = 2000  # (the PNG's 10,000 pixels: over twice the limit)
        ImageFile.LOAD_TRUNCATED_IMAGES = True
        http.client._MAXHEADERS = 1000
        mpmath.mp.dps = 30
        loop = _outcomes(*images)
        assert loop == {
            "bomb check": "DecompressionBombError",
            "text chunk": "DecompressionBombError",  # (the check comes first)
            "truncated": True,
            "headers": 150,
            "mpmath": "0." + "3" * 30,
        }
        assert ex.submit(_outcomes, *images).result() == loop
        assert Parallel(n_jobs=2)(delayed(_outcomes)(*images) for _ in range(2)) == [loop, loop]
        Image.MAX_IMAGE_PIXELS = None  # (no check at all)
        PngImagePlugin.MAX_TEXT_CHUNK = 100  # (less than the text's 2,000 bytes)
        ImageFile.LOAD_TRUNCATED_IMAGES = False  # (which would skip the chunk quietly)
        assert ex.submit(lambda: Image.MAX_IMAGE_PIXELS).result() is None
        loop = _outcomes(*images)
        assert loop["text chunk"] == "ValueError"  # "Decompressed data too large"
        assert ex.submit(_outcomes, *images).result() == loop
        PngImagePlugin.MAX_TEXT_CHUNK = 1024 * 1024
        # back to the defaults in the parent: the worker's own values come back
        Image.MAX_IMAGE_PIXELS = DEFAULT_PIXELS
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        http.client._MAXHEADERS = 100
        mpmath.mp.dps = 15
        assert ex.submit(_outcomes, *images).result() == before


def _change_them():
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    mpmath.mp.dps = 5


def test_a_tasks_own_setting_is_its_batchs(defaults):
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    mpmath.mp.dps = 30
    with Executor(max_workers=1) as ex:
        ex.submit(_change_them).result()
        assert ex.submit(lambda: (ImageFile.LOAD_TRUNCATED_IMAGES, mpmath.mp.dps)).result() == (True, 30)


def test_pickled_sends_only_the_settings_that_are_not_the_defaults(defaults):
    assert modulesettings.pickled() is None
    mpmath.mp.pretty = True
    data = modulesettings.pickled()
    assert data is not None and modulesettings.pickled() is data  # (kept while unchanged)
    mpmath.mp.pretty = False
    assert modulesettings.pickled() is None


def test_a_module_of_that_name_without_the_setting_is_left_out(monkeypatch, defaults):
    # a library of another version, or a module of the script's own named like one
    import types

    monkeypatch.setitem(sys.modules, "mpmath", types.ModuleType("mpmath"))
    Image.MAX_IMAGE_PIXELS = None
    data = modulesettings.pickled()
    assert [pickle.loads(one) for _, one in pickle.loads(data)] == [(("PIL.Image", "MAX_IMAGE_PIXELS"), None)]


def _write_mo(path, messages):
    """A GNU gettext catalog of *messages* (msgid -> translation), as msgfmt writes it."""
    import struct

    messages = {"": "Content-Type: text/plain; charset=UTF-8\n", **messages}
    keys = sorted(messages)
    ids = strs = b""
    spans = []
    for key in keys:
        msgid, msgstr = key.encode(), messages[key].encode()
        spans.append((len(ids), len(msgid), len(strs), len(msgstr)))
        ids += msgid + b"\0"
        strs += msgstr + b"\0"
    start_ids = 7 * 4 + 16 * len(keys)
    start_strs = start_ids + len(ids)
    table_ids = b"".join(struct.pack("<2I", n, start_ids + at) for at, n, _, _ in spans)
    table_strs = b"".join(struct.pack("<2I", n, start_strs + at) for _, _, at, n in spans)
    header = struct.pack("<7I", 0x950412DE, 0, len(keys), 7 * 4, 7 * 4 + 8 * len(keys), 0, 0)
    path.parent.mkdir(parents=True)
    path.write_bytes(header + table_ids + table_strs + ids + strs)


def _greeting(_=None):
    import gettext

    return gettext.gettext("Hello")


def test_a_task_translates_with_the_domain_the_program_bound(tmp_path, monkeypatch):
    import gettext

    _write_mo(tmp_path / "fr" / "LC_MESSAGES" / "pptest.mo", {"Hello": "Bonjour"})
    monkeypatch.setenv("LANGUAGE", "fr")  # (environment variables reach the workers)
    monkeypatch.setattr(gettext, "_localedirs", dict(gettext._localedirs))
    monkeypatch.setattr(gettext, "_current_domain", gettext._current_domain)
    with Executor(max_workers=1) as ex:
        assert ex.submit(_greeting).result() == "Hello"
        gettext.bindtextdomain("pptest", str(tmp_path))  # an i18n program's first lines
        gettext.textdomain("pptest")
        assert _greeting() == "Bonjour"
        assert ex.submit(_greeting).result() == "Bonjour"
        gettext.textdomain("messages")
        assert ex.submit(_greeting).result() == "Hello"


def _first_week(_=None):
    import calendar

    return calendar.monthcalendar(2026, 11)[0]


def test_a_task_lays_out_weeks_from_the_first_weekday_the_program_set(monkeypatch):
    import calendar

    monkeypatch.setattr(calendar.c, "firstweekday", calendar.firstweekday())
    with Executor(max_workers=1) as ex:
        monday_first = ex.submit(_first_week).result()
        calendar.setfirstweekday(calendar.SUNDAY)
        assert _first_week() != monday_first
        assert ex.submit(_first_week).result() == _first_week() == [1, 2, 3, 4, 5, 6, 7]


def _join_and_extract(archive, folder):
    """What a task gets from urljoin on an s3:// address, and from extracting a tar archive
    with a member that points outside the folder."""
    import os
    import tarfile
    import urllib.parse

    joined = urllib.parse.urljoin("s3://bucket/data/", "a.csv")
    os.makedirs(folder)
    with tarfile.open(archive) as tar:
        extracted = outcome(lambda: tar.extractall(folder))
    return joined, extracted


def test_a_task_joins_urls_and_extracts_archives_with_the_scripts_settings(tmp_path, monkeypatch):
    import tarfile
    import urllib.parse

    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("../outside.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    folders = iter(tmp_path / f"out{i}" / "x" for i in range(20))
    with Executor(max_workers=1) as ex:
        run = lambda: ex.submit(_join_and_extract, str(archive), str(next(folders))).result()  # noqa: E731
        before = run()
        trusting = tarfile.TarFile.extraction_filter is None  # (Python < 3.14's default)
        assert before[0] == "a.csv" and (before[1] is None or not trusting)
        for name in ("uses_relative", "uses_netloc"):
            monkeypatch.setattr(urllib.parse, name, [*getattr(urllib.parse, name), "s3"])
        monkeypatch.setattr(tarfile.TarFile, "extraction_filter", staticmethod(tarfile.data_filter))
        loop = _join_and_extract(str(archive), str(next(folders)))
        assert loop == ("s3://bucket/data/a.csv", "OutsideDestinationError")
        assert run() == loop
    assert (tmp_path / "out0" / "outside.txt").exists() == trusting  # (the worker's own default)
    assert not (tmp_path / "out2" / "outside.txt").exists()  # (the script's filter: refused)
