"""How the commands log: `configure("text" | "json")`, once per process, from the CLI's
`--log-format` (searcher/cli/options.py).

text (the default) leaves Python's logging as it was: warnings on stderr, as plain lines.
json writes every record, this package's, waitress's and the access lines of a server
(searcher/web/access_log.py) alike, as one JSON object a line on stderr, for a log collector
(journald, Loki, Elasticsearch): `time` (ISO 8601, UTC), `level`, `logger`, `message`, and
the fields a record carries (`log.info(..., extra={"status": 200})`), `exception` with a
traceback. Records of this package and of waitress from INFO up, of other libraries from
WARNING up; Python's warnings go through logging too, so nothing else reaches stderr.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import TextIO

LOG_FORMATS = ("text", "json")
OWN_LOGGERS = ("searcher", "waitress")  # logged from INFO in json mode; everything else from WARNING

# What every LogRecord has: anything else on a record came as `extra=` and is a field of the line.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object a line (never a raw newline inside: json.dumps escapes them)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")
                    .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in record.__dict__.items():
            if name not in _STANDARD and not name.startswith("_") and name not in line:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        # ASCII: a file name that is not UTF-8 (a lone surrogate) cannot break the line or the stream
        return json.dumps(line, default=str)


class _Handler(logging.StreamHandler):
    """The handler `configure` installs (told from any other by its class, to be replaced)."""


def configure(log_format: str = "text", stream: TextIO | None = None, level: int = logging.INFO) -> None:
    """Set up logging for a command: `log_format` text (as Python's logging is by default) or
    json (one JSON object a line to `stream`, stderr by default; this package's and waitress's
    records from `level`). Called again, it replaces what it set before."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format {log_format!r}: choose one of {', '.join(LOG_FORMATS)}")
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(handler)
    if log_format == "text":
        logging.captureWarnings(False)
        for name in OWN_LOGGERS:
            logging.getLogger(name).setLevel(logging.NOTSET)
        return
    handler = _Handler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(level)
    logging.captureWarnings(True)  # warnings.warn(...) as records of the logger py.warnings

