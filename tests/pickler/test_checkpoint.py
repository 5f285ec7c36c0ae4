"""SharedState checkpoints: atomic saves, headers, signatures checked before unpickling."""

from __future__ import annotations

import os
import pickle
import stat
import subprocess
import sys

import numpy as np
import pytest

from picklepool import PicklingError, SharedState, StateFileError, StateSignatureError
from picklepool.pickler import checkpoint
from tests.mutator import mutating

KEY = "a 16-byte secret"  # the shortest key that signs (checkpoint.MIN_KEY_BYTES)


def _touch(path: str) -> str:
    with open(path, "w") as f:
        f.write("unpickled")
    return "touched"


class Marker:
    """Unpickling this creates the file at *path*: proof that something was unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (_touch, (self.path,))


class Unpicklable:
    def __reduce__(self):
        raise TypeError("this object refuses to be pickled")


@pytest.fixture
def marked(tmp_path):
    """A state whose loading would create tmp_path/'marker'."""
    marker = tmp_path / "marker"
    return SharedState({"m": Marker(str(marker)), "w": np.arange(1000.0)}), marker


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_round_trip_keeps_values_and_version(tmp_path):
    value = {
        "c": np.arange(12, dtype=np.int32).reshape(3, 4),
        "f": np.asfortranarray(np.random.default_rng(0).random((5, 3))),
        "b": np.array([True, False]),
        "list": [1, "two", 3.0, None],
        "nested": {"t": (1, 2)},
    }
    state = SharedState(value)
    with state:
        pass
    path = tmp_path / "ckpt.pp"
    assert state.save(path) == 1
    loaded = SharedState.load(path)
    assert loaded.version == 1 and loaded._lock is not state._lock
    for name in ("c", "f", "b"):
        np.testing.assert_array_equal(loaded.value[name], value[name])
        assert loaded.value[name].dtype == value[name].dtype
    assert loaded.value["f"].flags.f_contiguous
    assert loaded.value["c"].flags.writeable
    assert loaded.value["list"] == value["list"] and loaded.value["nested"] == {"t": (1, 2)}
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("key", [b"secret-bytes-key", "secret str key, 20+"])
def test_signed_round_trip(tmp_path, key):
    path = tmp_path / "s.pp"
    SharedState({"a": 1}).save(path, key=key)
    assert SharedState.load(path, key=key).value == {"a": 1}


def test_key_from_the_environment(tmp_path, monkeypatch, marked):
    state, marker = marked
    monkeypatch.setenv("PICKLEPOOL_STATE_KEY", "from-env-16-bytes")
    state.save(tmp_path / "e.pp")
    assert SharedState.load(tmp_path / "e.pp").value["m"] == "touched"
    marker.unlink()
    monkeypatch.setenv("PICKLEPOOL_STATE_KEY", "another")
    with pytest.raises(StateSignatureError, match="signature does not match"):
        SharedState.load(tmp_path / "e.pp")
    assert not marker.exists()


def test_wrong_key_unpickles_nothing(tmp_path, marked):
    state, marker = marked
    path = tmp_path / "k.pp"
    state.save(path, key="the right secret")
    with pytest.raises(StateSignatureError, match="key is wrong"):
        SharedState.load(path, key="wrong")
    assert not marker.exists()
    SharedState.load(path, key="the right secret")  # the test object does unpickle when allowed
    assert marker.exists()


@pytest.mark.parametrize("signed", [True, False])
def test_a_tampered_byte_is_refused(tmp_path, marked, signed):
    state, marker = marked
    path = tmp_path / "t.pp"
    key = KEY if signed else None
    state.save(path, key=key)
    data = bytearray(path.read_bytes())
    data[checkpoint.HEADER_SIZE + 200] ^= 0x01
    path.write_bytes(bytes(data))
    error = StateSignatureError if signed else StateFileError
    with pytest.raises(error, match="signature does not match" if signed else "checksum"):
        SharedState.load(path, key=key)
    assert not marker.exists()


@pytest.mark.parametrize("cut", [1, 40, 1000])
def test_a_truncated_file_is_refused(tmp_path, marked, cut):
    state, marker = marked
    path = tmp_path / "cut.pp"
    state.save(path, key=KEY)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - cut])
    with pytest.raises(StateFileError, match="truncated"):
        SharedState.load(path, key=KEY)
    assert not marker.exists()


def test_an_unsigned_file_is_refused_when_a_key_is_required(tmp_path, marked, monkeypatch):
    state, marker = marked
    path = tmp_path / "u.pp"
    state.save(path)
    with pytest.raises(StateSignatureError, match="not signed"):
        SharedState.load(path, key=KEY)
    monkeypatch.setenv("PICKLEPOOL_STATE_KEY", KEY)
    with pytest.raises(StateSignatureError, match="not signed"):
        SharedState.load(path)
    assert not marker.exists()


def test_a_signed_file_needs_its_key(tmp_path, marked):
    state, marker = marked
    state.save(tmp_path / "s.pp", key=KEY)
    with pytest.raises(StateSignatureError, match="pass key="):
        SharedState.load(tmp_path / "s.pp")
    assert not marker.exists()


def test_foreign_files_are_refused(tmp_path):
    marker = tmp_path / "marker"
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps(Marker(str(marker))))
    with pytest.raises(StateFileError, match="not a picklepool SharedState checkpoint"):
        SharedState.load(plain)
    assert not marker.exists()
    empty = tmp_path / "empty.pp"
    empty.write_bytes(b"")
    with pytest.raises(StateFileError, match="empty"):
        SharedState.load(empty)


def test_a_newer_format_asks_for_an_upgrade(tmp_path):
    path = tmp_path / "new.pp"
    SharedState(1).save(path)
    data = bytearray(path.read_bytes())
    data[8:10] = (checkpoint.FORMAT + 1).to_bytes(2, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(StateFileError, match="upgrade picklepool"):
        SharedState.load(path)


def test_errors_are_value_errors():
    assert issubclass(StateFileError, ValueError)
    assert issubclass(StateSignatureError, StateFileError)


@pytest.mark.parametrize(
    "key, error",
    [(b"", ValueError), (123, TypeError), (b"123456", ValueError), ("15 bytes secret", ValueError)],
)
def test_bad_keys(tmp_path, key, error):
    with pytest.raises(error, match="key="):
        SharedState(1).save(tmp_path / "x.pp", key=key)
    assert leftovers(tmp_path) == []


def test_a_key_shorter_than_16_bytes_does_not_sign_a_checkpoint(tmp_path, monkeypatch):
    # "use a secret of at least 16 bytes": a 6-byte key was taken, and the file signed with it
    with pytest.raises(
        ValueError, match="key= is 6 bytes long, too short to sign a checkpoint; use a secret of at least 16"
    ):
        SharedState(1).save(tmp_path / "x.pp", key=b"123456")
    monkeypatch.setenv("PICKLEPOOL_STATE_KEY", "short")
    with pytest.raises(ValueError, match="PICKLEPOOL_STATE_KEY is 5 bytes long"):
        SharedState(1).save(tmp_path / "x.pp")
    assert leftovers(tmp_path) == [] and not (tmp_path / "x.pp").exists()
    SharedState(1).save(tmp_path / "x.pp", key="sixteen byte key")  # 16: signs
    assert SharedState.load(tmp_path / "x.pp", key="sixteen byte key").value == 1


def test_saves_taken_while_another_thread_changes_the_value_are_consistent(tmp_path):
    state = SharedState({"a": 0, "b": 0})
    seen = [{"a": 0, "b": 0}]
    with mutating(state) as wait_for_a_change:
        for n in range(30):
            wait_for_a_change()  # each save sees a newer value than the last
            state.save(tmp_path / f"{n}.pp")
            seen.append(SharedState.load(tmp_path / f"{n}.pp").value)
    assert all(v["a"] == v["b"] for v in seen)
    assert len({v["a"] for v in seen}) == 31


# -- crashes in the middle of save ----------------------------------------------------


@pytest.mark.parametrize("failing", ["replace", "fsync", "write"])
def test_a_failed_save_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch, failing):
    path = tmp_path / "c.pp"
    SharedState({"v": "old"}).save(path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError(f"simulated crash in {failing}")

    if failing == "write":

        def half_then_boom(f, pieces, version, key):
            f.write(b"half of a checkpoint")
            boom()

        monkeypatch.setattr(checkpoint, "write_frame", half_then_boom)
    else:
        monkeypatch.setattr(os, failing, boom)
    with pytest.raises(OSError, match="simulated crash"):
        SharedState({"v": "new"}).save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert SharedState.load(path).value == {"v": "old"}
    assert leftovers(tmp_path) == []


def test_an_unpicklable_value_names_the_culprit_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "p.pp"
    SharedState({"v": "old"}).save(path)
    with pytest.raises(PicklingError, match=r"state.value\['bad'\]"):
        SharedState({"bad": Unpicklable()}).save(path)
    assert SharedState.load(path).value == {"v": "old"}
    assert leftovers(tmp_path) == []


def test_permissions_of_an_existing_file_are_kept(tmp_path):
    path = tmp_path / "m.pp"
    SharedState(1).save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o640)
    SharedState(2).save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


# -- a writer killed mid-save -------------------------------------------------------------

STALLED_WRITER = """
import sys
from picklepool import SharedState
from picklepool.pickler import checkpoint

def stalled(f, pieces, version, key):
    f.write(pieces[0])
    f.flush()
    print("writing", flush=True)
    sys.stdin.read()  # blocks: the test kills this process here

checkpoint.write_frame = stalled
SharedState({"x": list(range(1000))}).save(sys.argv[1])
"""


def test_temporaries_of_a_writer_killed_mid_save_are_removed_by_the_next_save(tmp_path):
    path = tmp_path / "ckpt.pp"
    SharedState({"old": 1}).save(path)
    writer = subprocess.Popen(
        [sys.executable, "-c", STALLED_WRITER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline() == "writing\n"
        (left,) = leftovers(tmp_path)  # the writer's, mid-save
        assert f"-{writer.pid}-" in left
        assert (tmp_path / left).stat().st_size > 0
        SharedState({"other": 1}).save(path)  # the writer is alive: its file stays
        assert leftovers(tmp_path) == [left]
    finally:
        writer.kill()
        writer.wait()
        assert writer.stdin is not None and writer.stdout is not None
        writer.stdin.close()
        writer.stdout.close()
    assert leftovers(tmp_path) == [left]
    assert SharedState.load(path).value == {"other": 1}  # the old file was never torn
    SharedState({"new": 2}).save(path)
    assert leftovers(tmp_path) == []
    assert SharedState.load(path).value == {"new": 2}


def test_which_temporaries_count_as_stale(tmp_path):
    me = checkpoint._writer()
    machine, pid, started = me.split("-")
    prefix = ".ckpt.pp."
    names = {
        "live": f"{prefix}{me}.abc.tmp",
        "reused pid": f"{prefix}{machine}-{pid}-{int(started) - 5000}.abc.tmp",
        "no such pid": f"{prefix}{machine}-{2**22 + 12345}-{started}.abc.tmp",
        "other machine": f"{prefix}{'0' * 8 if machine != '0' * 8 else '1' * 8}-1-1.abc.tmp",
        "old name": f"{prefix}k3j_x8ab.tmp",
        "other target": f".other.pp.{machine}-{2**22 + 12345}-1.abc.tmp",
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"partial")
    removed = checkpoint.remove_stale_temporaries(str(tmp_path), prefix)
    assert sorted(removed) == sorted([names["reused pid"], names["no such pid"]])
    kept = {p.name for p in tmp_path.iterdir()}
    assert kept == {names[k] for k in ("live", "other machine", "old name", "other target")}


def test_a_save_that_cannot_write_names_the_checkpoint_and_the_fix(tmp_path):
    # SharedState.save into a folder that does not exist raised
    # "[Errno 2] No such file or directory: '.../.x.pp.2e7698a1-10191-179646744396.6r1kbugz.tmp'":
    # a temporary's name the program never wrote, and no word of what to do
    state = SharedState({"a": 1})
    missing = tmp_path / "no" / "such" / "folder" / "ckpt.pp"
    with pytest.raises(FileNotFoundError) as info:
        state.save(missing)
    message = str(info.value)
    assert repr(str(missing)) in message and ".tmp" not in message
    assert "does not exist" in message and "os.makedirs" in message
    assert info.value.errno == 2 and info.value.filename == str(missing)

    folder = tmp_path / "ckpt.pp"  # a folder where the file should go: the rename fails
    folder.mkdir()
    with pytest.raises(IsADirectoryError) as info:
        state.save(folder)
    message = str(info.value)
    assert repr(str(folder)) in message and ".tmp" not in message and "is a folder" in message
    assert os.listdir(tmp_path) == ["ckpt.pp"] and os.listdir(folder) == []  # no temporary left
