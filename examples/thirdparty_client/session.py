"""The session: the steps of params, renders, errors, pings and ending, run in order on one
server, sharing a ``Session``."""

from __future__ import annotations

import zmq

from . import ending, errors, params, pings, renders
from .connection import Connection
from .space import latent_size, psi_size

STEPS = (
    params.hello,
    params.get_params_agrees,
    params.set_params,
    params.set_params_stale,
    renders.render_explicit,
    renders.render_lists,
    renders.render_seeded,
    errors.malformed_messages,
    pings.ping_main,
    pings.ping_heartbeat,
    pings.ping_while_busy,
    ending.dealer_without_delimiter,
    ending.second_hello,
)


class Session:
    """What the steps share: options, sockets, the summary, and what earlier steps found."""

    def __init__(self, endpoint, *, size, count, log, timeout_s):
        self.endpoint, self.size, self.count = endpoint, size, count
        self.log, self.timeout_s = log, timeout_s
        self.ctx = zmq.Context()
        self.conn = Connection(self.ctx, endpoint, timeout_s)
        self.hb = None  # the heartbeat socket, once ping_heartbeat opened it
        self.summary = {"endpoint": endpoint, "errors": {}, "notes": []}
        self.hello = self.space = self.classes = None
        self.gen0 = self.gen = None  # generation before set_params, and now
        self.psi = self.latents = None  # the psi installed, the explicit latents rendered
        self.item_ids = []  # of every item rendered so far
        self.instance = None  # the server's instance name, from the first ping

    @property
    def D(self):
        return psi_size(self.space)

    @property
    def L(self):
        return latent_size(self.space)

    def close(self):
        if self.hb is not None:
            self.hb.close()
        self.conn.close()
        self.ctx.term()


def run(endpoint, *, size=32, count=4, shutdown=True, log=print, timeout_s=120.0):
    s = Session(endpoint, size=size, count=count, log=log, timeout_s=timeout_s)
    try:
        for step in STEPS:
            step(s)
        if shutdown:
            ending.shutdown(s)
        return s.summary
    finally:
        s.close()
