"""structlog set-up: JSON lines in production, console rendering for development.

structlog events and standard-library log records (the store, aiohttp,
asyncio) go to stderr through the same processors, one event per line.

structlog events do not pass through the standard library's logging: a
level check there, a LogRecord and a Formatter cost ~85 µs per line, which
an LP rejecting every order at last look would pay once per order. Our own
events are filtered by a level test in the logger's method and rendered
straight to the stream (JSON by orjson), a few microseconds per line.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, BinaryIO, TextIO

import orjson
import structlog
from structlog.typing import Processor, WrappedLogger

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

# the level our own events are filtered at; set_log_level changes it for
# every logger already made, since the methods below read it on each call
_threshold = logging.INFO


class _Logger(structlog.BoundLoggerBase):
    """A bound logger whose methods drop an event below the level before
    any processor runs."""

    def debug(self, event: str, **kw: Any) -> Any:
        if _threshold > logging.DEBUG:
            return None
        return self._proxy_to_logger("debug", event, **kw)

    def info(self, event: str, **kw: Any) -> Any:
        if _threshold > logging.INFO:
            return None
        return self._proxy_to_logger("info", event, **kw)

    def warning(self, event: str, **kw: Any) -> Any:
        if _threshold > logging.WARNING:
            return None
        return self._proxy_to_logger("warning", event, **kw)

    def error(self, event: str, **kw: Any) -> Any:
        return self._proxy_to_logger("error", event, **kw)

    def exception(self, event: str, **kw: Any) -> Any:
        kw.setdefault("exc_info", True)
        return self._proxy_to_logger("error", event, **kw)

    def critical(self, event: str, **kw: Any) -> Any:
        return self._proxy_to_logger("critical", event, **kw)


class _NamedBytesLogger(structlog.BytesLogger):
    """Writes rendered bytes to a stream; named, for the ``logger`` field."""

    def __init__(self, name: str, file: BinaryIO) -> None:
        super().__init__(file)
        self.name = name


class _NamedWriteLogger(structlog.WriteLogger):
    """Writes rendered text to a stream; named, for the ``logger`` field."""

    def __init__(self, name: str, file: TextIO) -> None:
        super().__init__(file)
        self.name = name


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        stamp,
    ]
    foreign_renderer: Processor
    binary: BinaryIO | None = getattr(sys.stderr, "buffer", None)
    if fmt == "json" and binary is not None:
        out = binary

        def factory(name: str = "", *_: Any) -> WrappedLogger:
            return _NamedBytesLogger(name, out)

        renderer: Processor = structlog.processors.JSONRenderer(
            serializer=orjson.dumps, option=orjson.OPT_NON_STR_KEYS
        )
        foreign_renderer = structlog.processors.JSONRenderer()
    else:

        def factory(name: str = "", *_: Any) -> WrappedLogger:
            return _NamedWriteLogger(name, sys.stderr)

        foreign_renderer = (
            structlog.processors.JSONRenderer()
            if fmt == "json"
            else structlog.dev.ConsoleRenderer(colors=False)
        )
        renderer = foreign_renderer
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=_Logger,
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    # records of the standard library's loggers (the store, aiohttp, asyncio)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                foreign_renderer,
            ],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    set_log_level(level)


def set_log_level(level: str) -> None:
    """Change the level of every logger from now on (a config reload)."""
    global _threshold
    numeric = _LEVELS[level]
    _threshold = numeric
    logging.getLogger().setLevel(numeric)
    logging.getLogger("aiohttp.access").setLevel(max(numeric, logging.WARNING))
