"""The code a script registers by type or tag reaches the workers (``workers.registries``):
cases of a module's ``functools.singledispatch`` function, PyYAML's constructors and
representers. A task finds them as the loop's did, where a warm worker fell to the default
case, or raised (under joblib too)."""

from __future__ import annotations

import functools
import os
import site
import sys
import types

import pytest

from picklepool.workers.registries import genericfunctions

from ..conftest import prints_ok

FORMATS = """
import functools

@functools.singledispatch
def render(obj):
    raise TypeError(f"cannot render {type(obj).__name__}")

@render.register
def _(obj: int):
    return f"int {obj}"

def render_number(obj):
    return f"number {obj}"

def task(obj):
    try:
        return render(obj)
    except TypeError as exc:
        return str(exc)
"""

SCRIPT = """
import decimal, fractions, sys
sys.path.insert(0, sys.argv[1])
import pp_formats
from picklepool import Executor, Parallel, delayed

class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

@pp_formats.render.register
def _(p: Point):
    return f"P({p.x},{p.y})"

pp_formats.render.register(decimal.Decimal, lambda d: f"D{d}")
pp_formats.render.register(fractions.Fraction, pp_formats.render_number)  # a case of the module's

objs = [1, Point(1, 2), decimal.Decimal("1.5"), fractions.Fraction(1, 3), "s"]

def check():
    loop = [pp_formats.task(o) for o in objs]
    assert Parallel(n_jobs=2)(delayed(pp_formats.task)(o) for o in objs) == loop, loop
    with Executor(max_workers=2) as ex:
        assert list(ex.map(pp_formats.task, objs)) == loop
    return loop

first = check()
assert first[1] == "P(1,2)" and first[3] == "number 1/3" and first[4] == "cannot render str", first

@pp_formats.render.register  # (a notebook's cell run again, edited: the same type, a new case)
def _(p: Point):
    return f"Point {p.x} {p.y}"

assert check()[1] == "Point 1 2"
print("ok")
"""


def test_a_task_finds_the_cases_the_script_registered_on_a_modules_generic_function(tmp_path):
    (tmp_path / "pp_formats.py").write_text(FORMATS)
    prints_ok(SCRIPT.replace("sys.argv[1]", repr(str(tmp_path))))


@pytest.fixture
def generic(monkeypatch):
    """A generic function of a module that is not one of the user's (no source file of theirs:
    as an installed library's), ``pp_generic``, found by the parent."""
    module = types.ModuleType("pp_generic")
    module.__file__ = os.path.join(site.getsitepackages()[0], "pp_generic.py")  # (installed)
    module.functools = functools

    @functools.singledispatch
    def show(obj):
        return "default"

    show.__module__ = "pp_generic"
    module.show = show
    monkeypatch.setitem(sys.modules, "pp_generic", module)
    # (looked again: another test's modules, gone, may leave len(sys.modules) as last seen)
    monkeypatch.setattr(genericfunctions, "_count", -1)
    return show


def test_of_a_librarys_generic_function_only_the_scripts_cases_are_sent(generic):
    class Mine:
        pass

    Mine.__module__ = "__main__"

    def own(obj):
        return "own"

    own.__module__ = "pp_generic"
    generic.register(float, own)  # the module's own case: a worker importing it has it
    generic.register(Mine, own)  # a case for the script's class
    genericfunctions.generic_signal(functools)  # (the parent finds the generic functions)
    keys = {key for key, _ in genericfunctions.generic_entries(functools)}
    assert keys == {("singledispatch", "pp_generic", "show", Mine)}


YAML_SCRIPT = """
import yaml
from picklepool import Parallel, delayed

class Point(yaml.YAMLObject):
    yaml_tag = "!Point"
    yaml_loader = [yaml.SafeLoader, yaml.Loader]
    yaml_dumper = yaml.SafeDumper

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, other):
        return (self.x, self.y) == (other.x, other.y)

def celsius(loader, node):
    return float(loader.construct_scalar(node)) + 273.15

yaml.add_constructor("!celsius", celsius, Loader=yaml.SafeLoader)

class Money:
    def __init__(self, cents):
        self.cents = cents

def money(dumper, m):
    return dumper.represent_scalar("!money", str(m.cents))

yaml.add_representer(Money, money, Dumper=yaml.SafeDumper)

def task(text):
    try:
        return yaml.safe_load(text), yaml.safe_dump({"m": Money(5), "p": Point(1, 2)})
    except yaml.YAMLError as exc:
        return type(exc).__name__

texts = ["t: !celsius 20", "p: !Point {x: 1, y: 2}", "plain: 1"]
loop = [task(t) for t in texts]
assert loop[0][0] == {"t": 293.15} and loop[1][0] == {"p": Point(1, 2)}, loop
assert Parallel(n_jobs=2)(delayed(task)(t) for t in texts) == loop
print("ok")
"""


def test_a_task_loads_and_dumps_with_the_yaml_tags_the_script_added():
    pytest.importorskip("yaml")
    prints_ok(YAML_SCRIPT)


PLOT_SCRIPT = """
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt, matplotlib.scale as mscale, matplotlib.units as munits
import numpy as np
from matplotlib.axes import Axes
from matplotlib.projections import register_projection
from picklepool import Parallel, delayed

class MyAxes(Axes):
    name = "myaxes"

register_projection(MyAxes)

class Meters:
    def __init__(self, v):
        self.v = v

class MetersConverter(munits.ConversionInterface):
    @staticmethod
    def convert(value, unit, axis):
        return np.asarray([v.v if isinstance(v, Meters) else v for v in np.atleast_1d(value)], float) * 100

    @staticmethod
    def axisinfo(unit, axis):
        return munits.AxisInfo(label="cm")

munits.registry[Meters] = MetersConverter()

class SquareScale(mscale.FuncScale):
    name = "sq"

    def __init__(self, axis, **kw):
        super().__init__(axis, (np.square, np.sqrt))

mscale.register_scale(SquareScale)

def figure(i):
    fig = plt.figure()
    ax = fig.add_subplot(projection="myaxes")
    ax.plot([Meters(1), Meters(2)], [0, 1])
    ax.set_yscale("sq")
    fig.canvas.draw()
    out = type(ax).__name__, ax.xaxis.get_label_text(), ax.get_yscale()
    plt.close(fig)
    return out

loop = [figure(i) for i in range(2)]
assert loop[0] == ("MyAxes", "cm", "sq"), loop
assert Parallel(n_jobs=2)(delayed(figure)(i) for i in range(2)) == loop
print("ok")
"""


def test_a_tasks_figure_has_the_projections_scales_and_units_the_script_registered():
    pytest.importorskip("matplotlib")
    prints_ok(PLOT_SCRIPT)
