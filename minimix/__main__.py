"""``python -m minimix`` and the ``minimix`` console script: see ``minimix.cli``."""
import sys


def main(argv=None) -> int:
    from minimix.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
