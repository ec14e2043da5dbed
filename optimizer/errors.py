"""Errors the CLI turns into one readable line."""


class CliError(Exception):
    """A user mistake (bad argument, bad file): printed as one line, exit status 2."""
