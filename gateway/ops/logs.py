"""structlog set-up: JSON lines in production, console rendering for development.

structlog events and standard-library log records (the storage, aiohttp,
asyncio) go to stderr through the same processors, one event per line.  A
record whose message is a mapping, as our own modules that log through the
standard library write them (``{"event": "session_store_opened", "path":
...}``), becomes that named event with those fields; a library's text
record becomes an event named by its text.

structlog events do not pass through the standard library's logging: a
level check there, a LogRecord and a Formatter cost ~85 µs per line, which
an LP rejecting every order at last look would pay once per order. Our own
events are filtered by a level test in the logger's method and rendered
straight to the stream (JSON by orjson), a few microseconds per line.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any, BinaryIO, TextIO

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

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


def _json_text(value: Any, **options: Any) -> str:
    return orjson.dumps(value, **options).decode()


def _record_fields(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """The event name and fields a standard-library record carries as its
    message, when that is a mapping."""
    message = getattr(event.get("_record"), "msg", None)
    if isinstance(message, Mapping):
        event.update(message)
    return event


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
        # the same JSON, as text for the standard library's stream handler
        foreign_renderer = structlog.processors.JSONRenderer(
            serializer=_json_text, option=orjson.OPT_NON_STR_KEYS
        )
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
    # records of the standard library's loggers (the storage, aiohttp, asyncio)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                foreign_renderer,
            ],
            foreign_pre_chain=[_record_fields, *shared],
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
