"""`ferry-broker` / `python -m ferry.broker`: placeholder until the Broker issue lands."""

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ferry-broker", description="Run a Ferry broker.")
    parser.parse_args(argv)
    print("ferry-broker: the broker is not built yet (see the Broker issue)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
