"""Which pickler is in force, and where that choice came from."""

from __future__ import annotations

import os
import pickle

import pytest

from picklepool import Parallel, delayed, parallel_config, register_pickler
from picklepool.pickler import get_pickler, resolve_pickler, unregister_pickler
from picklepool.pickler.base import BasePickler
from tests.conftest import run_python


class CountingPickler(pickle.Pickler):
    """A user pickler: plain pickle that also counts its dumps."""

    dumps_count = 0

    def dump(self, obj):
        CountingPickler.dumps_count += 1
        return super().dump(obj)


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv("PICKLEPOOL_PICKLER", raising=False)
    monkeypatch.delenv("LOKY_PICKLER", raising=False)
    return monkeypatch


def test_default_is_hybrid(clean_env):
    pickler, source = resolve_pickler()
    assert (pickler.name, source) == ("hybrid", "default")


def test_precedence_argument_config_env(clean_env):
    clean_env.setenv("LOKY_PICKLER", "cloudpickle")
    assert resolve_pickler()[0].name == "cloudpickle"
    assert resolve_pickler()[1] == "env var LOKY_PICKLER"
    clean_env.setenv("PICKLEPOOL_PICKLER", "pickle")
    assert resolve_pickler() == (get_pickler("pickle"), "env var PICKLEPOOL_PICKLER")
    with parallel_config(pickler="cloudpickle"):
        assert resolve_pickler() == (get_pickler("cloudpickle"), "parallel_config")
        with parallel_config(pickler="hybrid"):
            assert resolve_pickler()[0].name == "hybrid"
        assert resolve_pickler()[0].name == "cloudpickle"
        assert resolve_pickler("pickle") == (get_pickler("pickle"), "argument")
    assert resolve_pickler()[1] == "env var PICKLEPOOL_PICKLER"


@pytest.mark.parametrize(
    ("where", "expected"),
    [("argument", "from argument"), ("config", "from parallel_config"), ("env", "PICKLEPOOL_PICKLER")],
)
def test_bad_name_says_where_it_came_from(clean_env, where, expected):
    with pytest.raises(ValueError) as info:
        if where == "argument":
            Parallel(pickler="nope")
        elif where == "config":
            parallel_config(pickler="nope")
        else:
            clean_env.setenv("PICKLEPOOL_PICKLER", "nope")
            Parallel(n_jobs=2)(delayed(abs)(-1) for _ in range(1))  # resolved by calls that pickle
    msg = str(info.value)
    assert "'nope'" in msg and expected in msg
    for name in ("pickle", "cloudpickle", "hybrid"):
        assert name in msg


def test_register_and_use_a_pickler_class(clean_env):
    register_pickler("counting", CountingPickler)
    try:
        before = CountingPickler.dumps_count
        out = Parallel(n_jobs=2, pickler="counting")(delayed(abs)(-i) for i in range(5))
        assert out == [0, 1, 2, 3, 4]
        assert CountingPickler.dumps_count > before
        with pytest.raises(ValueError, match="built-in"):
            register_pickler("pickle", CountingPickler)
        with pytest.raises(TypeError, match="Pickler subclass"):
            register_pickler("bad", dict)
    finally:
        unregister_pickler("counting")
    with pytest.raises(ValueError, match="counting"):
        get_pickler("counting")


def _nested_call_with(name):
    try:
        return Parallel(n_jobs=2, pickler=name)(delayed(abs)(-i) for i in range(3))
    except ValueError as exc:
        return str(exc).split(";")[0]


def test_a_task_finds_the_picklers_the_parent_registered_for_its_own_call(clean_env):
    # register_pickler("counting", ...) then a task's own Parallel(pickler="counting"): the
    # worker, which never ran the registration, said "unknown pickler 'counting'"
    register_pickler("counting", CountingPickler)
    try:
        assert Parallel(n_jobs=2)(delayed(_nested_call_with)("counting") for _ in range(2)) == [[0, 1, 2]] * 2
    finally:
        unregister_pickler("counting")
    # the same warm workers: taken back there too
    assert (
        Parallel(n_jobs=2)(delayed(_nested_call_with)("counting") for _ in range(2))
        == ["unknown pickler 'counting' (from argument)"] * 2
    )


def test_module_attr_path(clean_env):
    p = get_pickler("tests.pickler.test_registry:CountingPickler")
    assert isinstance(p, BasePickler)
    assert p.loads(p.dumps({"a": 1})) == {"a": 1}
    with pytest.raises(ValueError, match="could not be imported"):
        get_pickler("no_such_module_xyz:Thing")
    with pytest.raises(ValueError, match="Pickler subclass"):
        get_pickler("pickle:dumps")


def test_env_var_switches_every_call_in_a_process():
    code = """
        from picklepool import Parallel, delayed
        from picklepool.pickler import resolve_pickler
        p, src = resolve_pickler()
        print(p.name, src)
        print(Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(3)))
        print(Parallel(n_jobs=2, pickler="cloudpickle")(delayed(lambda x: x)(1) for _ in range(1)))
        try:
            Parallel(n_jobs=2)(delayed(lambda x: x)(1) for _ in range(1))
        except Exception as e:
            print(type(e).__name__)
    """
    res = run_python(code, env={"PICKLEPOOL_PICKLER": "pickle", "LOKY_PICKLER": "cloudpickle"})
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "pickle env var PICKLEPOOL_PICKLER"
    assert lines[1:] == ["[0, 1, 2]", "[1]", "PicklingError"]
    res = run_python(
        "from picklepool.pickler import resolve_pickler; print(*resolve_pickler())",
        env={"LOKY_PICKLER": "cloudpickle"},
    )
    assert "env var LOKY_PICKLER" in res.stdout


def _two_calls_refused(env: dict[str, str]) -> list[str]:
    """Two loky calls in a script run under *env*: the errors they raised, one line each
    (the same, both a SettingValueError), with nothing on stderr (no worker server started)."""
    code = """
        from picklepool import Parallel, delayed
        from picklepool.errors import SettingValueError
        for _ in range(2):
            try:
                Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(3))
            except SettingValueError as e:
                print(e)
    """
    res = run_python(code, env=env)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 2 and lines[0] == lines[1], res.stdout
    assert res.stderr == ""
    return lines


@pytest.mark.parametrize("value", ["hybrid", "no_such_module", "package.module:Class"])
def test_a_loky_pickler_loky_cannot_import_is_named_with_the_fix_at_the_call(value):
    # loky imports LOKY_PICKLER's value as a module when loky is imported (here and in every
    # worker): picklepool's own names failed every call with loky's ModuleNotFoundError, and
    # the workers' server printed its traceback. Now: picklepool's error, nothing started.
    lines = _two_calls_refused({"LOKY_PICKLER": value, "PICKLEPOOL_PICKLER": "hybrid"})
    assert lines[0].startswith(f"LOKY_PICKLER={value!r}: loky imports") and "PICKLEPOOL_PICKLER" in lines[0]


@pytest.mark.parametrize(
    "module, says",
    [
        ("os", "has no Pickler class for loky"),  # a module, but not a pickler's
        ("pp_pickler_three", "has no Pickler class"),  # Pickler = 3: loky cannot subclass it
        ("pp_pickler_raises", "raised RuntimeError: broken on import"),
    ],
)
def test_a_loky_pickler_module_loky_cannot_use_is_named_with_the_fix_at_the_call(tmp_path, module, says):
    # A module that exists but that loky cannot take its Pickler from (none, not a class, an
    # import that raises) passed the check for a missing module: every call failed with
    # loky's own AttributeError ("module 'os' has no attribute 'Pickler' ... This error
    # occurred while setting loky_pickler") and the workers' server printed its traceback
    # on stderr. Now: picklepool's error naming the variable and the fix, nothing started.
    (tmp_path / "pp_pickler_three.py").write_text("Pickler = 3\n")
    (tmp_path / "pp_pickler_raises.py").write_text("raise RuntimeError('broken on import')\n")
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    lines = _two_calls_refused({"LOKY_PICKLER": module, "PICKLEPOOL_PICKLER": "hybrid", "PYTHONPATH": path})
    assert lines[0].startswith(f"LOKY_PICKLER={module!r}: loky imports"), lines[0]
    assert says in lines[0] and "PICKLEPOOL_PICKLER" in lines[0]


def test_a_bad_loky_pickler_is_named_wherever_loky_workers_are_first_needed():
    # Counting cores imported loky by itself: picklepool.cpu_count(), effective_n_jobs(-1),
    # Parallel(n_jobs=-1) and backend="dask" (whose default n_jobs is -1) failed with loky's
    # ModuleNotFoundError ("No module named 'hybrid'"), and the failed import was left half
    # done for the next call. Counting cores needs no pickler: they count (loky is imported
    # without the variable); a call on loky's workers, which read it, names it and the fix.
    code = """
        import os
        import picklepool
        from picklepool import Parallel, delayed
        from picklepool.errors import SettingValueError
        print(picklepool.cpu_count() >= 1, picklepool.effective_n_jobs(-1) >= 1)
        Parallel(backend="dask")
        p = Parallel(n_jobs=-1)
        try:
            p(delayed(abs)(-i) for i in range(3))
        except SettingValueError as e:
            print(str(e).split(":")[0])
        del os.environ["LOKY_PICKLER"]
        print(p(delayed(abs)(-i) for i in range(3)))
    """
    res = run_python(code, env={"LOKY_PICKLER": "hybrid"})
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["True True", "LOKY_PICKLER='hybrid'", "[0, 1, 2]"]


MODULE_PICKLER = """
import copyreg
import pickle


class Marker:
    pass


def _reduce_marker(marker):
    return (str, ("pickled by mypickler",))


class Pickler(pickle.Pickler):
    dispatch_table = {**copyreg.dispatch_table, Marker: _reduce_marker}
"""


def test_loky_pickler_in_lokys_own_form(tmp_path):
    """LOKY_PICKLER=module, a module with a Pickler class, as loky's set_loky_pickler reads it."""
    (tmp_path / "mypickler.py").write_text(MODULE_PICKLER)
    code = """
        from mypickler import Marker
        from picklepool import Parallel, delayed
        from picklepool.pickler import resolve_pickler
        p, src = resolve_pickler()
        print(p.name, src, p.pickler_class.__module__)
        print(Parallel(n_jobs=2)(delayed(len)(Marker()) for _ in range(3)))
        print(Parallel(n_jobs=2, pickler="hybrid")(delayed(abs)(-i) for i in range(3)))
    """
    res = run_python(code, env={"LOKY_PICKLER": "mypickler", "PYTHONPATH": str(tmp_path)})
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        "mypickler env var LOKY_PICKLER mypickler",
        # the worker got the string the module's Pickler made of each Marker
        f"{[len('pickled by mypickler')] * 3}",
        "[0, 1, 2]",
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("no_such_pickler_module", "unknown pickler 'no_such_pickler_module' (from env var LOKY_PICKLER)"),
        ("json", "'json' (from env var LOKY_PICKLER) is a module, but its Pickler attribute is None"),
        ("not a name", "unknown pickler 'not a name' (from env var LOKY_PICKLER)"),
    ],
)
def test_bad_module_form_lists_valid_names(clean_env, value, expected):
    clean_env.setenv("LOKY_PICKLER", value)
    with pytest.raises(ValueError) as info:
        resolve_pickler()
    msg = str(info.value)
    assert expected in msg
    assert "['cloudpickle', 'hybrid', 'pickle']" in msg and "module with a Pickler class" in msg


def test_module_form_that_fails_to_import_says_why(clean_env, tmp_path):
    (tmp_path / "broken_pickler_mod.py").write_text("import no_such_dependency_xyz\n")
    clean_env.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match=r"'broken_pickler_mod' \(from argument\) could not be imported"):
        get_pickler("broken_pickler_mod")


@pytest.mark.parametrize("value", ["no_such_module_anywhere", "hybrid", "os"])
def test_a_pickler_loky_cannot_use_stops_only_the_calls_that_start_processes(value):
    # loky reads LOKY_PICKLER as it is imported: with a value it cannot use set from the
    # program's start, every call failed, n_jobs=1 and threading too (they import the
    # dispatch code, loky with it), and a multiprocessing pool ran, then its resource
    # tracker printed loky's traceback. (The test above passed only where an earlier test
    # had imported loky.) Calls that start processes raise the error before starting one.
    proc = run_python(
        """
        from picklepool import Executor, Parallel, delayed
        from picklepool.errors import SettingValueError

        print(Parallel(n_jobs=1)(delayed(abs)(-i) for i in range(3)))
        print(Parallel(n_jobs=2, backend="threading")(delayed(abs)(-i) for i in range(3)))
        for backend in ("loky", "multiprocessing"):
            try:
                Parallel(n_jobs=2, backend=backend)(delayed(abs)(-i) for i in range(3))
            except SettingValueError as exc:
                print(backend, "LOKY_PICKLER" in str(exc))
        try:
            Executor(1)
        except SettingValueError as exc:
            print("Executor", "LOKY_PICKLER" in str(exc))
        """,
        env={"LOKY_PICKLER": value},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n") == [
        "[0, 1, 2]",
        "[0, 1, 2]",
        "loky True",
        "multiprocessing True",
        "Executor True",
        "",
    ]
    assert proc.stderr == ""


def test_a_bad_pickler_in_the_environment_does_not_stop_calls_that_pickle_nothing(clean_env):
    clean_env.setenv("LOKY_PICKLER", "no_such_module_anywhere")
    assert Parallel(n_jobs=1)(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]
    assert Parallel(n_jobs=2, backend="threading")(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]
    with pytest.raises(ValueError, match="no_such_module_anywhere.*LOKY_PICKLER"):
        Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(3))


def test_cloudpickler_names_its_class_and_a_subclass_or_an_instance_sets_its_own():
    # CloudPickler.pickler_class became a property (cloudpickle imported as read): the
    # class then named a property object, and a subclass setting it in __init__ failed
    # ("property 'pickler_class' of 'Mine' object has no setter")
    import cloudpickle

    from picklepool.pickler import CloudPickler

    class Counting(cloudpickle.Pickler):
        dumps_count = 0

        def dump(self, obj):
            Counting.dumps_count += 1
            return super().dump(obj)

    class Mine(CloudPickler):
        name = "mine"

        def __init__(self):
            self.pickler_class = Counting

    assert CloudPickler.pickler_class is cloudpickle.Pickler
    assert CloudPickler().pickler_class is cloudpickle.Pickler
    mine = Mine()
    assert mine.pickler_class is Counting
    assert mine.loads(mine.dumps([1, 2])) == [1, 2] and Counting.dumps_count == 1
    result = run_python(  # still not imported with the class
        """
        import sys
        from picklepool.pickler import CloudPickler
        print("cloudpickle" in sys.modules, CloudPickler.pickler_class.__module__)
        """
    )
    assert result.stdout.split() == ["False", "cloudpickle.cloudpickle"], result.stdout + result.stderr
