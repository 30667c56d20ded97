"""A client that never finishes its request headers cannot hold a connection (slowloris).

uvicorn closes an idle keep-alive connection after ``timeout_keep_alive``, but nothing times a connection that
was opened and never used, or a request whose headers trickle in a byte at a time. ``header_timeout_protocol``
returns uvicorn's h11 protocol with both timed: a new connection may stay idle as long as a kept-alive one, and
once a request's first byte arrives its headers must be complete within ``header_timeout``; the connection is
closed otherwise. (The body is timed by the app, which answers 408.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from uvicorn.protocols.http.h11_impl import H11Protocol


def header_timeout_protocol(header_timeout: float, on_timeout: Callable[[], None] = lambda: None) -> type:
    """uvicorn's ``H11Protocol`` with request headers timed; ``on_timeout`` is called for each connection cut."""

    class HeaderTimeoutProtocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None
        _reading_headers = False  # a request's first byte has arrived, its headers not all yet

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm(self.timeout_keep_alive)  # idle until the first byte, as a kept-alive connection may be

        def data_received(self, data: bytes) -> None:
            if not self._in_request() and not self._reading_headers:
                self._reading_headers = True
                self._arm(header_timeout)
            super().data_received(data)
            if self._in_request():
                self._reading_headers = False
                self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()  # the keep-alive timer now runs until the next request's first byte
            self._disarm()

        def _in_request(self) -> bool:
            return self.cycle is not None and not self.cycle.response_complete

        def _arm(self, seconds: float) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(seconds, self._expired)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _expired(self) -> None:
            self._header_timer = None
            if not self._in_request() and not self.transport.is_closing():
                on_timeout()
                self.transport.close()

    return HeaderTimeoutProtocol
