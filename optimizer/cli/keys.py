"""`autosim keys`: CURVE key pairs for an authenticated render farm."""

from __future__ import annotations

import argparse

from optimizer.cli.base import Command
from optimizer.errors import CliError


class KeysCommand(Command):
    name = "keys"
    help = "make CURVE keys for an authenticated render farm"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", required=True, help="key folder to create")

    def run(self, args: argparse.Namespace) -> int:
        from protocol.curve import KeysError, generate

        try:
            root = generate(args.out)
        except KeysError as exc:
            raise CliError(str(exc)) from None
        print(f"wrote CURVE keys to {root}: servers use --curve {root} (server.key_secret, "
              f"authorized/), clients --curve {root} (client.key_secret, server.key); keep "
              f"the *.key_secret files private")
        return 0
