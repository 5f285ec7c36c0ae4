"""picklepool's own sockets wait as their protocol says, whatever default timeout the program set.

``socket.setdefaulttimeout(10)`` at a script's top (mirrored into the workers, see
``mirror``) applies to every socket made afterwards, picklepool's too: a socket with a
timeout is non-blocking underneath, so the forkserver's request socket, given to the
server process, failed its first read there (``BlockingIOError``: the server died with
a traceback on stderr, and workers were started the slow way), a streamed batch whose
parent paused longer than the timeout failed in the worker (``TimeoutError``), and a
lane's raw reads failed while it waited for its next batch.
"""

from __future__ import annotations

import socket


def blocking(sock: socket.socket) -> socket.socket:
    """*sock*, made blocking (no timeout) if the default timeout gave it one."""
    if sock.gettimeout() is not None:
        sock.setblocking(True)
    return sock
