"""The stdout emitter: one structured-mode JSON line per outcome, when there is no sink."""

from __future__ import annotations

import json
import sys
import threading
from typing import TextIO

from cloudevents.conversion import to_dict
from cloudevents.http import CloudEvent


class StdoutEmitter:
    """One structured-mode JSON line per event, for runs without a sink."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def emit(self, event: CloudEvent) -> None:
        line = json.dumps(to_dict(event), separators=(",", ":"), default=str)
        stream = self._stream or sys.stdout
        with self._lock:
            stream.write(line + "\n")
            stream.flush()
