"""A plain TCP peer for the local probes' tests: it answers with fixed bytes (garbage) or never
answers (a silent peer, for timeouts). Served like the lab's endpoints (``LoopbackServer``)."""

from __future__ import annotations

import socket

from collector.lab.endpoints import IO_TIMEOUT_S, LoopbackServer


class RawServer(LoopbackServer):
    """A TCP peer that is not what the probe expects: it sends ``reply`` (after reading the client's
    first bytes when ``wait_for_client``) and closes, or with ``reply=None`` never answers."""

    kind = "raw"

    def __init__(
        self, reply: bytes | None, *, wait_for_client: bool = True, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        super().__init__(host, port)
        self.reply = reply
        self.wait_for_client = wait_for_client

    def handle(self, conn: socket.socket) -> None:
        if self.reply is None:
            self._stopping.wait(IO_TIMEOUT_S)  # silent until stopped: the probe must time out
            return
        if self.wait_for_client:
            conn.recv(4096)
        conn.sendall(self.reply)
