"""A render-server client written only from docs/protocol.md (pyzmq + numpy + stdlib).

The command line: ``main(argv)`` parses it and runs the session.
"""

from __future__ import annotations

import argparse

from .session import run


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="python -m examples.thirdparty_client", description=__doc__.splitlines()[0]
    )
    ap.add_argument("endpoint", help="e.g. tcp://127.0.0.1:5555")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--count", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    ap.add_argument("--no-shutdown", action="store_true")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    return run(
        a.endpoint,
        size=a.size,
        count=a.count,
        shutdown=not a.no_shutdown,
        log=(lambda *_: None) if a.quiet else print,
        timeout_s=a.timeout,
    )
