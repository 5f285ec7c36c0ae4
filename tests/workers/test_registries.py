"""What the parent registered in libraries' registries reaches the workers (workers.registries)."""

from __future__ import annotations

import decimal
import mimetypes
import sqlite3
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from picklepool import Executor, Parallel, delayed
from picklepool.workers import registries

from ..conftest import outcome, prints_ok

pd = pytest.importorskip("pandas")
xr = pytest.importorskip("xarray")
mpl = pytest.importorskip("matplotlib")


class Geo:
    """An accessor of the program's own, as pandas' documentation shows."""

    def __init__(self, obj):
        self._obj = obj

    def center(self):
        return float(self._obj["lat"].mean())


class GeoSet:
    def __init__(self, ds):
        self._ds = ds

    def names(self):
        return sorted(self._ds.data_vars)


def _as_text(value):
    return f"<{value}>"


def _from_text(data):
    return data.decode().upper()


def _uses_them(i):
    """What a task gets from each registration: its value, or its error's name."""
    out = {}

    def attempt(key, fn):
        out[key] = outcome(fn)

    attempt("pandas", lambda: pd.DataFrame({"lat": [i, i + 2.0]}).geo.center())
    attempt("xarray", lambda: xr.Dataset({"b": ("x", [1]), "a": ("x", [2])}).geoset.names())
    attempt("colormap", lambda: mpl.colormaps["picklepool-test"].N)

    def insert():
        con = sqlite3.connect(":memory:", detect_types=sqlite3.PARSE_DECLTYPES)
        con.execute("create table t (x shout)")
        con.execute("insert into t values (?)", (decimal.Decimal("1.5"),))
        return con.execute("select x from t").fetchone()[0]

    attempt("sqlite3", insert)
    out["mimetypes"] = mimetypes.guess_type("shape.picklepool-geo")[0]
    out["xml"] = ET.tostring(ET.Element(f"{{{NAMESPACE}}}root")).decode()
    return out


NAMESPACE = "http://picklepool.invalid/geo"


def _register():
    """What a script's top registers in each library."""
    from matplotlib.colors import ListedColormap

    pd.api.extensions.register_dataframe_accessor("geo")(Geo)
    xr.register_dataset_accessor("geoset")(GeoSet)
    mpl.colormaps.register(ListedColormap(["red", "green", "blue"], name="picklepool-test"))
    sqlite3.register_adapter(decimal.Decimal, _as_text)
    sqlite3.register_converter("shout", _from_text)
    mimetypes.add_type("application/x-picklepool-geo", ".picklepool-geo")
    ET.register_namespace("geo", NAMESPACE)


@pytest.fixture
def registered():
    _register()
    yield
    _unregister()


def _unregister(_=None):
    for cls, name in ((pd.DataFrame, "geo"), (xr.Dataset, "geoset")):
        if name in vars(cls):
            delattr(cls, name)
    pd.DataFrame._accessors.discard("geo")
    if "picklepool-test" in mpl.colormaps:
        mpl.colormaps.unregister("picklepool-test")
    sqlite3.adapters.pop((decimal.Decimal, sqlite3.PrepareProtocol), None)
    sqlite3.converters.pop("SHOUT", None)
    mimetypes.types_map.pop(".picklepool-geo", None)
    ET._namespace_map.pop(NAMESPACE, None)


EXPECTED = {
    "pandas": 1.0,
    "xarray": ["a", "b"],
    "colormap": 3,
    "sqlite3": "<1.5>".upper(),
    "mimetypes": "application/x-picklepool-geo",
    "xml": f'<geo:root xmlns:geo="{NAMESPACE}" />',  # (a warm worker wrote ns0:root)
}


def test_a_task_finds_the_accessors_colormaps_and_adapters_the_program_registered():
    with Executor(max_workers=1) as ex:
        # the workers are warm before the program registers anything (a script's top would
        # do it before; a notebook's cell, after): they raised AttributeError, KeyError,
        # ProgrammingError, as under joblib
        before = ex.submit(_uses_them, 0).result()
        assert before["pandas"] == "AttributeError" and before["colormap"] == "KeyError"
        assert before["mimetypes"] is None and before["xml"].startswith("<ns0:root")
        _register()
        try:
            loop = _uses_them(0)
            assert loop == EXPECTED
            assert ex.submit(_uses_them, 0).result() == loop
            assert Parallel(n_jobs=2)(delayed(_uses_them)(0) for _ in range(2)) == [loop, loop]
        finally:
            _unregister()
        assert ex.submit(_uses_them, 0).result() == before  # (taken back with the parent's)


def test_a_tasks_own_unregistering_is_its_batchs(registered):
    with Executor(max_workers=1) as ex:
        ex.submit(_unregister).result()
        assert ex.submit(_uses_them, 0).result()["pandas"] == 1.0


def test_pickled_sends_only_the_programs_own_entries(registered):
    data = registries.pickled()
    assert data is not None and registries.pickled() is data  # (kept while unchanged)
    _unregister()
    # pandas', xarray's, matplotlib's, sqlite3's, mimetypes' and ElementTree's own: every worker has them
    assert registries.pickled() is None


SCRIPT = """
import collections.abc, numbers
import pandas as pd
from picklepool import Parallel, delayed

@pd.api.extensions.register_series_accessor("unit")
class Unit:
    def __init__(self, s):
        self._s = s
    def km(self):
        return (self._s / 1000).tolist()

class Table:  # a mapping of the script's own, registered as such
    def __init__(self, d):
        self.d = d
    def __getitem__(self, k):
        return self.d[k]
    def __len__(self):
        return len(self.d)
    def __iter__(self):
        return iter(self.d)

collections.abc.Mapping.register(Table)

@pd.api.extensions.register_extension_dtype
class Celsius(pd.api.extensions.ExtensionDtype):  # found by its name, as "category" is
    name = "celsius"
    type = float

    @classmethod
    def construct_array_type(cls):
        raise NotImplementedError

class Money:
    pass

numbers.Number.register(Money)

def task(i):
    return (
        pd.Series([i * 1000.0]).unit.km(),
        isinstance(Table({}), collections.abc.Mapping),
        isinstance(Money(), numbers.Number),
        issubclass(Table, collections.abc.Sequence),
        str(pd.api.types.pandas_dtype("celsius")),
    )

if __name__ == "__main__":
    loop = [task(i) for i in range(3)]
    assert loop[1] == ([1.0], True, True, False, "celsius"), loop
    out = Parallel(n_jobs=2)(delayed(task)(i) for i in range(3))
    assert out == loop, (out, loop)
    print("ok")
"""


def test_a_scripts_accessor_and_its_classes_registered_as_abc_subclasses_are_so_in_workers():
    prints_ok(SCRIPT)


class GeoEdited(Geo):
    """The accessor of a notebook's cell run again, edited: another class, the same name."""

    def center(self):
        return -1.0


def test_an_accessor_registered_again_under_its_name_replaces_the_workers(registered):
    import warnings

    with Executor(max_workers=1) as ex:
        assert ex.submit(_uses_them, 0).result()["pandas"] == 1.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # (pandas: "overriding a preexisting attribute")
            pd.api.extensions.register_dataframe_accessor("geo")(GeoEdited)
            xr.register_dataset_accessor("geoset")(
                type("GeoSetEdited", (GeoSet,), {"names": lambda self: []})
            )
        mimetypes.add_type("application/x-picklepool-geo2", ".picklepool-geo")
        loop = _uses_them(0)
        assert (loop["pandas"], loop["xarray"], loop["mimetypes"]) == (
            -1.0,
            [],
            "application/x-picklepool-geo2",
        )
        assert ex.submit(_uses_them, 0).result() == loop


Image = pytest.importorskip("PIL.Image")
ImageFile = pytest.importorskip("PIL.ImageFile")


class _PPImageFile(ImageFile.ImageFile):
    """An image format of a plugin that is not Pillow's (as pillow-heif's HEIC): a header
    ``PPTEST``, the width and height in a byte each, then grey pixels."""

    format = "PPTEST"
    format_description = "picklepool's test format"

    def _open(self):
        header = self.fp.read(8)
        if header[:6] != b"PPTEST":
            raise SyntaxError("not a PPTEST file")
        width, height = header[6], header[7]
        self._size = (width, height)
        self._mode = "L"
        self.tile = [ImageFile._Tile("raw", (0, 0, width, height), 8, ("L", 0, 1))]


def _pp_accept(prefix):
    return prefix[:6] == b"PPTEST"


def _pp_save(image, fp, filename):
    fp.write(b"PPTEST" + bytes(image.size) + image.convert("L").tobytes())


def _round_trip(path):
    """Save an image as *path* (its extension names the format), then open it."""
    try:
        Image.new("L", (3, 2), 7).save(path)
        with Image.open(path) as image:
            return image.format, image.size, image.getpixel((0, 0)), Image.MIME.get(image.format)
    except Exception as exc:  # noqa: BLE001 - the error is the task's answer
        return type(exc).__name__


def test_a_task_opens_and_saves_images_of_a_format_a_plugin_registered(tmp_path):
    # pillow-heif's register_heif_opener() at a script's top: a task's Image.open("x.heic")
    # raised UnidentifiedImageError in a warm worker (and its save, KeyError)
    with Executor(max_workers=1) as ex:
        assert ex.submit(_round_trip, str(tmp_path / "a.pptest")).result() in ("KeyError", "ValueError")
        Image.register_open("PPTEST", _PPImageFile, _pp_accept)
        Image.register_save("PPTEST", _pp_save)
        Image.register_extension("PPTEST", ".pptest")
        Image.register_mime("PPTEST", "image/x-pptest")
        try:
            loop = _round_trip(str(tmp_path / "b.pptest"))
            assert loop == ("PPTEST", (3, 2), 7, "image/x-pptest")
            assert ex.submit(_round_trip, str(tmp_path / "c.pptest")).result() == loop
        finally:
            for table in (Image.OPEN, Image.SAVE, Image.MIME):
                table.pop("PPTEST", None)
            Image.EXTENSION.pop(".pptest", None)
            Image.ID.remove("PPTEST")
        assert ex.submit(_round_trip, str(tmp_path / "d.pptest")).result() in ("KeyError", "ValueError")


def test_a_library_of_another_shape_sends_nothing_of_it_and_fails_no_call(monkeypatch):
    import types

    odd = types.ModuleType("PIL.Image")
    odd.OPEN = "not a table"  # (a half-imported module, another version, a namesake)
    monkeypatch.setitem(sys.modules, "PIL.Image", odd)
    monkeypatch.setitem(sys.modules, "xarray", types.ModuleType("xarray"))
    registries.pickled()  # (no error)
    assert Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]


def _renamed_font(folder):
    """matplotlib's DejaVu Sans under a family name of its own, as a font file the script
    adds (a company's font, a CJK one for the labels)."""
    from fontTools.ttLib import TTFont
    from matplotlib import font_manager

    font = TTFont(font_manager.findfont("DejaVu Sans"))
    for record in font["name"].names:
        if record.nameID in (1, 4, 16):
            record.string = "Picklepool Test Sans"
        elif record.nameID == 6:
            record.string = "PicklepoolTestSans"
    path = str(folder / "picklepool-test-sans.ttf")
    font.save(path)
    return path


def _find_font(_=None):
    from matplotlib import font_manager

    try:
        props = font_manager.FontProperties(family="Picklepool Test Sans")
        return font_manager.fontManager.findfont(props, fallback_to_default=False)
    except ValueError as exc:  # "Failed to find font": matplotlib drew it in DejaVu Sans
        return type(exc).__name__


def test_a_task_finds_the_font_files_the_script_added(tmp_path):
    pytest.importorskip("fontTools")
    from matplotlib import font_manager

    path = _renamed_font(tmp_path)
    with Executor(max_workers=1) as ex:
        assert ex.submit(_find_font).result() == "ValueError"
        font_manager.fontManager.addfont(path)
        try:
            assert _find_font() == path
            assert ex.submit(_find_font).result() == path
        finally:
            manager = font_manager.fontManager
            manager.ttflist[:] = [f for f in manager.ttflist if f.fname != path]
            manager._findfont_cached.cache_clear()
        assert ex.submit(_find_font).result() == "ValueError"  # (taken back)


def _colormap_size(name):
    return mpl.colormaps[name].N if name in mpl.colormaps else "KeyError"


def test_a_librarys_colormaps_reach_the_workers_by_its_import_not_in_every_batch(tmp_path, monkeypatch):
    # seaborn registers 24 colormaps as it is imported (160 kB pickled): a worker imports it
    # (then has them as the parent does), where every batch would have carried them
    from picklepool.workers import reloads

    (tmp_path / "pp_fake_palettes.py").write_text(
        "import matplotlib as mpl, numpy as np\n"
        "from matplotlib.colors import ListedColormap\n"
        "ppfake = ListedColormap(np.linspace(0, 1, 768).reshape(256, 3), name='ppfake')\n"
        "mpl.colormaps.register(ppfake)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(reloads, "_roots", (str(tmp_path) + "/",))  # (an installed library's folder)
    with Executor(max_workers=1) as ex:
        assert ex.submit(_colormap_size, "ppfake").result() == "KeyError"
        import pp_fake_palettes  # noqa: F401 - it registers its colormap

        try:
            data = registries.pickled()
            assert len(data) < 1000  # (the module's name, not the colormap's 256 colours)
            assert _colormap_size("ppfake") == 256
            assert ex.submit(_colormap_size, "ppfake").result() == 256
        finally:
            mpl.colormaps.unregister("ppfake")
            del sys.modules["pp_fake_palettes"]


SCRIPT_CHANGES = """
import sys, warnings
import matplotlib
import pandas as pd
from matplotlib.colors import ListedColormap
from picklepool import Executor, Parallel, delayed

sys.path.insert(0, sys.argv[1])
import brandcolors  # registers "brand" as it is imported, without force (as matplotlib advises)

def register():  # also the Executor's initializer: the workaround of before (it registers again)
    matplotlib.colormaps.register(ListedColormap(["navy", "gold", "red"], name="mine"), force=True)
    pd.api.extensions.register_series_accessor("unit")(Unit)

class Unit:
    def __init__(self, s):
        self.s = s
    def km(self):
        return (self.s / 1000).tolist()

def task(i):
    return matplotlib.colormaps["mine"].N, matplotlib.colormaps["brand"].N, pd.Series([i * 1000.0]).unit.km()

if __name__ == "__main__":
    register()
    loop = [task(i) for i in range(2)]
    assert Parallel(n_jobs=2)(delayed(brandcolors.swatch)(i) for i in range(2)) == [2, 3]
    assert Parallel(n_jobs=2)(delayed(task)(i) for i in range(2)) == loop
    with Executor(max_workers=2, initializer=register) as ex:
        assert list(ex.map(task, range(2))) == loop
    # replaced the way matplotlib wants, and another one added: no "Overwriting" warning
    matplotlib.colormaps.unregister("mine")
    matplotlib.colormaps.register(ListedColormap(["k", "w", "r", "g", "b"], name="mine"))
    matplotlib.colormaps.register(ListedColormap(["k", "w"], name="second"))
    loop = [task(i) for i in range(2)]
    assert loop[0][0] == 5
    assert Parallel(n_jobs=2)(delayed(task)(i) for i in range(2)) == loop
    print("ok")
"""

BRANDCOLORS = """
import matplotlib
from matplotlib.colors import ListedColormap

matplotlib.colormaps.register(ListedColormap(["navy", "gold"], name="brand"))

def swatch(i):
    return matplotlib.colormaps["brand"].N + i
"""


def test_colormaps_replaced_registered_on_import_or_by_an_initializer_work_under_w_error(tmp_path):
    # a module registering its colormap as it is imported found the name taken in a worker
    # (ValueError), an initializer registering what the parent did broke the Executor, and a
    # replaced colormap printed "Overwriting the cmap" from every worker (under -W error: the
    # old colormap stayed)
    (tmp_path / "brandcolors.py").write_text(BRANDCOLORS)
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", SCRIPT_CHANGES, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
    assert "Overwriting" not in proc.stderr and "Warning" not in proc.stderr, proc.stderr


def test_an_entry_that_cannot_be_sent_is_named_in_a_warning_once(recwarn):
    class Costly:  # (a local class: sent by value, as a script's) keeping a connection
        conn = sqlite3.connect(":memory:")

        def __init__(self, obj):
            self.obj = obj

    pd.api.extensions.register_series_accessor("costly")(Costly)
    try:
        registries.pickled()
        registries.pickled()
        said = [str(w.message) for w in recwarn if "Series.costly" in str(w.message)]
        assert len(said) == 1 and "cannot be pickled" in said[0] and "sqlite3.Connection" in said[0]
    finally:
        delattr(pd.Series, "costly")
        pd.Series._accessors.discard("costly")


def test_an_entry_too_large_to_travel_with_every_batch_is_left_out_with_a_warning(recwarn):
    class Reference:  # (by value, as a script's) with the table it loaded once
        table = b"x" * (registries.LIMIT + 1)

        def __init__(self, obj):
            self.obj = obj

    pd.api.extensions.register_series_accessor("reference")(Reference)
    try:
        data = registries.pickled()
        assert data is None or len(data) < registries.LIMIT
        said = [str(w.message) for w in recwarn if "Series.reference" in str(w.message)]
        assert len(said) == 1 and "which would travel with every batch" in said[0]
    finally:
        delattr(pd.Series, "reference")
        pd.Series._accessors.discard("reference")


def _parse(text):
    import csv
    import io

    return outcome(lambda: list(csv.reader(io.StringIO(text), dialect="picklepool-pipes")))


def test_a_task_parses_with_the_csv_dialect_the_script_registered():
    import csv

    with Executor(max_workers=1) as ex:
        assert ex.submit(_parse, "a|b").result() == "Error"  # unknown dialect
        csv.register_dialect("picklepool-pipes", delimiter="|")
        try:
            assert _parse("a|b") == [["a", "b"]]
            assert ex.submit(_parse, "a|b").result() == [["a", "b"]]
            csv.register_dialect("picklepool-pipes", delimiter=";")  # (again, under its name)
            assert ex.submit(_parse, "a;b").result() == _parse("a;b") == [["a", "b"]]
        finally:
            csv.unregister_dialect("picklepool-pipes")
        assert ex.submit(_parse, "a|b").result() == "Error"
