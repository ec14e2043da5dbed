"""A render-server client written only from docs/protocol.md (pyzmq + numpy + stdlib).

It does not import anything of this project: frames are built and parsed here, following
sections 2 (message layout, array references), 3 (replies, error codes), 4 (message types and
the psi / latent layouts), 7 (example exchanges) and 9 (version 2: ping and the heartbeat socket).

    python -m examples.thirdparty_client tcp://127.0.0.1:5555 [--size 32] [--count 4]
                                         [--no-shutdown] [--quiet]

``main(argv)`` runs the whole session and returns a summary dict (used by the test); every check
that fails raises ``ClientError``.

The modules, one job each:

- ``frames``: encode / decode of section 2, ``Message``, ``check`` and ``ClientError``;
- ``connection``: the REQ ``Connection``, ``expect_error``, DEALER helpers, the heartbeat socket
  (``heartbeat_endpoint``, ``Heartbeat``) and ``check_ping``;
- ``space``: parameter dimensions, the psi / latent layouts, ``sample_like_server``;
- ``items``: ``check_item``, what a rendered item must hold;
- ``session``: ``run``, the steps in order: ``params`` (hello, set_params), ``renders``,
  ``errors`` (the table of malformed messages), ``pings`` (version 2), ``ending`` (shutdown);
- ``cli``: ``main``, the command line.
"""

from .cli import main
from .frames import ClientError, Message, decode, encode
from .session import run

__all__ = ["ClientError", "Message", "decode", "encode", "main", "run"]
