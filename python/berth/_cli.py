"""The ``berth`` console script: the same command line as the ``berth`` binary."""

import sys


def main() -> None:
    """Runs ``berth`` with the process's arguments and exits with its status."""
    import os
    import signal

    from berth import _berth

    # `berth bench` starts `berth load` processes: here, this Python with this module.
    os.environ["BERTH_PYTHON_CLI"] = sys.executable

    # As the binary does: output piped into a reader that stops early (`| head`) ends berth
    # quietly, as it ends `cat` (Python ignores SIGPIPE by default).
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(_berth.cli_main(["berth", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
