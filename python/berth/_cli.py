"""The ``berth`` console script: the same command line as the ``berth`` binary."""

import sys


def main() -> None:
    """Runs ``berth`` with the process's arguments and exits with its status."""
    from berth import _berth

    sys.exit(_berth.cli_main(["berth", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
