"""`ferry-operator` / `python -m ferry.operator`: placeholder until the Operator issue lands."""

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ferry-operator", description="Run the Ferry operator.")
    parser.parse_args(argv)
    print("ferry-operator: the operator is not built yet (see the Operator issue)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
