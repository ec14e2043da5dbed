"""``python -m examples.thirdparty_client tcp://HOST:PORT [options]`` (from the repository root)."""

import sys

from .cli import main

if __name__ == "__main__":
    main(sys.argv[1:])
