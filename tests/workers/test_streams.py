"""The worker's end of a streamed batch (workers/streams.py), over a socket pair.

The parent's ``executor.streaming.Writer`` writes; the worker's ``Reader`` must give
the unpickler exactly the bytes ``dumps`` makes, map the buffers the stream announces,
and end with a clear ``EOFError`` when the parent stops mid-stream.
"""

from __future__ import annotations

import os
import pickle
import socket
import threading

import pytest

from picklepool.executor import streaming
from picklepool.executor.streaming import StreamBroken
from picklepool.pickler.base import StdlibPickler
from picklepool.pickler.buffers import Frames
from picklepool.pickler.hybrid import HybridPickler
from picklepool.pickler.stream import BUFFER, DATA, HEADER, StreamRef, decode_buffer, encode_buffer
from picklepool.workers import streams
from tests.fake_outbound import FakeOutbound, write_all


def never() -> None:
    return None


def writer(sock: socket.socket, look=never) -> streaming.Writer:
    return streaming.Writer(FakeOutbound(sock), look)


def send_in_thread(target, *args):
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def stream_of(pickler, obj):
    """``(reader, thread)``: *obj* dumped by *pickler* into one end, a Reader on the other."""
    a, b = socket.socketpair()

    def write():
        fake = FakeOutbound(a)
        w = streaming.Writer(fake, never)
        pickler.dump(obj, w)
        write_all(w, fake)

    return streams.Reader(b, StreamRef("unused")), send_in_thread(write), b


@pytest.mark.parametrize("pickler", [StdlibPickler(), HybridPickler()], ids=["pickle", "hybrid"])
def test_the_reader_gives_the_unpickler_what_dumps_makes(pickler):
    obj = {"values": list(range(300_000)), "text": "x" * 200_000, "blob": b"y" * 300_000}
    reader, thread, sock = stream_of(pickler, obj)
    try:
        assert pickler.load(reader) == obj
    finally:
        thread.join()
        sock.close()


def test_read_of_everything_and_readline():
    a, b = socket.socketpair()
    for part in (b"first line\nsecond", b"", b" part\n"):  # an empty DATA message is skipped
        a.sendall(HEADER.pack(DATA, len(part)) + part)
    a.close()
    reader = streams.Reader(b, StreamRef("unused"))
    assert reader.readline() == b"first line\n"
    assert reader.read() == b"second part\n"
    assert reader.read(5) == b""
    assert reader.ended
    b.close()


def test_a_stream_cut_short_says_the_parent_stopped(tmp_path):
    data = pickle.dumps(list(range(100_000)), protocol=5)
    path = str(tmp_path / "s")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)

    def parent():
        conn, _ = listener.accept()
        conn.sendall(HEADER.pack(DATA, len(data)) + data[: len(data) // 2])
        conn.close()

    thread = send_in_thread(parent)
    with pytest.raises(EOFError, match="stopped sending these arguments mid-stream"):
        streams.load(StdlibPickler(), Frames(StreamRef(path)))
    thread.join()
    listener.close()


def test_a_stream_whose_parent_is_gone_says_so(tmp_path):
    with pytest.raises(EOFError, match="before this worker connected"):
        streams.load(StdlibPickler(), Frames(StreamRef(str(tmp_path / "no-such-socket"))))


def test_buffers_announced_in_the_stream_are_mapped_in_order(tmp_path):
    np = pytest.importorskip("numpy")
    arrays = [np.arange(1000, dtype=np.int64), np.ones(500)]
    files = []
    for k, arr in enumerate(arrays):
        path = str(tmp_path / f"a-{k}")
        arr.tofile(path)
        files.append((path, arr.nbytes))
    picked = []
    data = pickle.dumps(arrays, protocol=5, buffer_callback=lambda pb: picked.append(pb) and False)
    assert len(picked) == 2
    a, b = socket.socketpair()
    for path, nbytes in files:  # announced before the data that uses them
        payload = encode_buffer(path, nbytes)
        a.sendall(HEADER.pack(BUFFER, len(payload)) + payload)
    a.sendall(HEADER.pack(DATA, len(data)) + data)
    a.close()
    ref = StreamRef("unused")
    reader = streams.Reader(b, ref)
    got = pickle.load(reader, buffers=reader.buffers("r"))
    b.close()
    assert [g.tolist() for g in got] == [arr.tolist() for arr in arrays]
    assert ref.refs == files
    assert not got[0].flags.writeable  # mapped as mmap_mode "r" says


def test_an_unknown_message_is_an_unpickling_error():
    a, b = socket.socketpair()
    a.sendall(HEADER.pack(b"Z", 0))
    a.close()
    with pytest.raises(pickle.UnpicklingError, match="unknown message"):
        streams.Reader(b, StreamRef("unused")).read(1)
    b.close()


def test_the_writer_stops_when_the_reader_is_gone():
    a, b = socket.socketpair()
    b.close()
    with pytest.raises(StreamBroken, match="closed the stream"):
        writer(a).write(b"x" * 100)
    a.close()


def test_what_the_socket_cannot_take_goes_from_a_thread_which_stops_when_the_pool_stalls(monkeypatch):
    monkeypatch.setattr("picklepool.executor.streaming.POLL", 0.01)
    a, b = socket.socketpair()
    looks = []

    def look():
        looks.append(1)
        return "the pool is gone" if len(looks) >= 2 else None

    fake = FakeOutbound(a)
    w = streaming.Writer(fake, look)
    w.write(b"x" * (64 << 20))  # nobody reads b: the socket fills, the rest waits, the caller goes on
    assert looks == []
    assert w.finish() is False  # a sender thread has the rest
    fake.released.wait()
    assert fake.log == ["broken the pool is gone"]
    assert len(looks) == 2
    b.close()


def test_buffer_payloads_round_trip():
    assert decode_buffer(encode_buffer("/dev/shm/x y/a-1", 12345)) == ("/dev/shm/x y/a-1", 12345)
    ref = pickle.loads(pickle.dumps(StreamRef("/p")))
    assert (ref.path, ref.refs) == ("/p", [])


def test_the_reader_uses_no_thread_or_fd_of_its_own():
    before = len(os.listdir("/proc/self/fd"))
    reader, thread, sock = stream_of(StdlibPickler(), list(range(10)))
    assert StdlibPickler().load(reader) == list(range(10))
    thread.join()
    sock.close()
    assert len(os.listdir("/proc/self/fd")) == before
