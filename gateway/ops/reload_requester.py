"""Sends ``POST /admin/reload`` to a gateway at a fixed interval, for
``fixgw bench --reload-every``.  A process of its own, importing the
standard library only (through :mod:`gateway.ops.direct`), so that it
costs the measuring client nothing.

    python -m gateway.ops.reload_requester URL TOKEN INTERVAL CONFIG_FILE_OR_EMPTY

With a config file, the first ``soft_penalty_ticks`` in it is flipped
between two values before each reload, so every reload really swaps the
rules in force.  Prints "ready", waits for a line on stdin, then prints each
reload's status on a line of its own; ends on SIGTERM.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from gateway.ops.direct import OPENER


def main() -> None:
    url, token, every, file = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
    running = True

    def stop(*_: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    # started ahead of time, so that starting costs nothing while measured
    print("ready", flush=True)
    sys.stdin.readline()
    flip = False
    while running:
        if file:
            path = Path(file)
            text = path.read_text()
            match = re.search(r"^soft_penalty_ticks = (\d+)", text, re.MULTILINE)
            if match is not None:
                value = int(match.group(1)) + (-1 if flip else 1)
                flip = not flip
                tmp = path.with_name(path.name + ".tmp")
                tmp.write_text(text[: match.start(1)] + str(value) + text[match.end(1) :])
                os.replace(tmp, path)
        request = urllib.request.Request(
            url, method="POST", headers={"Authorization": f"Bearer {token}"}
        )
        try:
            with OPENER.open(request, timeout=10) as response:
                status = json.loads(response.read()).get("status", "?")
        except urllib.error.HTTPError as exc:
            status = json.loads(exc.read()).get("status", str(exc.code))
        print(status, flush=True)
        deadline = time.monotonic() + every
        while running and time.monotonic() < deadline:
            time.sleep(0.01)


if __name__ == "__main__":
    main()
