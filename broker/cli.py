"""`ferry`: the user CLI. Placeholder until the Broker issue lands."""

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ferry", description="Use Ferry queues from a shell.")
    parser.parse_args(argv)
    print("ferry: no commands are built yet (see the Broker issue)", file=sys.stderr)
    return 1
