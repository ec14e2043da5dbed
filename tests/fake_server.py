"""A fake-backend render server process, for tests that kill, stop and start servers.

    python -m tests.fake_server --bind tcp://127.0.0.1:* [--delay-s 0.05]

Prints `AUTOSIM_READY {"endpoint": ..., "heartbeat": ..., "pid": ...}` once it serves.
No torch, no bpy: it starts in a fraction of a second.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from blender_addon.server import RenderServer
from tests.fakes import FakeBackend


class SlowFake(FakeBackend):
    """delay_s per image: asleep, or (spin) busy on one core as a renderer would be."""

    def __init__(self, delay_s: float, spin: bool = False) -> None:
        super().__init__()
        self.delay_s, self.spin = delay_s, spin

    def render(self, latent, width, height):
        if self.spin:
            end = time.process_time() + self.delay_s
            while time.process_time() < end:
                pass
        else:
            time.sleep(self.delay_s)
        return super().render(latent, width, height)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--bind", default="tcp://127.0.0.1:*")
    p.add_argument("--connect", help="join an optimizer listening here instead of binding")
    p.add_argument("--heartbeat-s", type=float, default=2.0)
    p.add_argument("--delay-s", type=float, default=0.0)
    p.add_argument("--max-renders", type=int, default=0)
    p.add_argument("--spin", action="store_true", help="spend delay-s of CPU, not asleep")
    args = p.parse_args(argv)
    server = RenderServer(SlowFake(args.delay_s, args.spin), max_renders=args.max_renders)
    if args.connect:
        endpoint = server.connect(args.connect, heartbeat_s=args.heartbeat_s)
    else:
        endpoint = server.bind(args.bind)
    print("AUTOSIM_READY " + json.dumps({"endpoint": endpoint, "pid": os.getpid(),
                                         "heartbeat": server.heartbeat_endpoint}), flush=True)
    try:
        server.serve_forever(poll_ms=50)
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
