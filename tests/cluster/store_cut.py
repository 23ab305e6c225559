"""A TCP relay to an S3 server that a test can cut: the object store stops answering, as the client sees it.

Every connection is relayed byte for byte. When the client's bytes contain ``cut_on`` (a request line's
path, e.g. the second part's key), that connection is dropped before the request reaches the server and
the relay refuses all traffic until ``reopen()``.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class StoreRelay:
    """127.0.0.1:<port> → ``target`` (``host:port``), cut once at the first request that carries ``cut_on``."""

    def __init__(self, target: str, cut_on: bytes) -> None:
        host, port = target.rsplit(":", 1)
        self._target = (host, int(port))
        self._cut_on = cut_on
        self._cut = threading.Event()
        self.was_cut = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self) -> StoreRelay:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._listener.close()
        self._drop_all()

    def reopen(self) -> None:
        """The store answers again."""
        self._cut_on = b"\x00never\x00"
        self._cut.clear()

    def _drop_all(self) -> None:
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._conns.clear()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._cut.is_set():
                client.close()  # the store does not answer
                continue
            upstream = socket.create_connection(self._target)
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        tail = b""
        try:
            while data := src.recv(65536):
                if from_client and not self._cut.is_set():
                    if self._cut_on in tail + data:
                        self._cut.set()
                        self.was_cut = True
                        self._drop_all()
                        return
                    tail = (tail + data)[-len(self._cut_on):]
                if self._cut.is_set():
                    return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.close()
