"""`autosim` command line: one class per subcommand (this package), each calling the library;
bad input gets one readable line and a non-zero exit, no traceback."""

from __future__ import annotations

import argparse
import sys
from importlib import metadata

from optimizer.cli.base import Command
from optimizer.cli.bench import BenchCommand
from optimizer.cli.demo import DemoCommand
from optimizer.cli.evaluate import EvaluateCommand
from optimizer.cli.keys import KeysCommand
from optimizer.cli.optimize import OptimizeCommand
from optimizer.cli.render import RenderCommand
from optimizer.cli.serve import ServeCommand
from optimizer.errors import CliError
from optimizer.simulators.client import ServerError, ServerUnavailable
from optimizer.simulators.local_servers import ServerStartError

COMMANDS: tuple[Command, ...] = (DemoCommand(), RenderCommand(), OptimizeCommand(),
                                 BenchCommand(), EvaluateCommand(), ServeCommand(),
                                 KeysCommand())


def _version() -> str:
    try:
        return metadata.version("autosim")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autosim",
        description="Learn the distribution of a Blender scene simulator (AutoSimulate).")
    parser.add_argument("--version", action="version", version=f"autosim {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_arguments(sub.add_parser(command.name, help=command.help))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    command = next(c for c in COMMANDS if c.name == args.command)
    try:
        return int(command.run(args) or 0)
    except CliError as exc:
        print(f"autosim {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (ServerUnavailable, ServerError, ServerStartError) as exc:
        print(f"autosim {args.command}: render server error: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print(f"autosim {args.command}: interrupted", file=sys.stderr)
        return 130
