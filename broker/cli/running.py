"""`ferry` entry point: parse, run one command, turn failures into a message and an exit code."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from ferry.broker.cli.args import connection, parse_args

EXIT_FAILED = 1  # the broker refused: unknown queue, bad settings, ...
EXIT_USAGE = 2  # argparse's own code for bad arguments
EXIT_UNREACHABLE = 3  # no broker answered at --broker-url
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_TERMINATED = 143  # SIGTERM


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Imported after parsing: aiohttp and pydantic take most of a second to import, which
    # --help and usage errors need not wait for.
    from pydantic import ValidationError

    from ferry.broker.cli.commands import COMMANDS, UsageError
    from ferry.broker.client import BrokerClient, BrokerError, Forbidden, RateLimited, Unavailable

    conn = connection(args, os.environ)
    command = COMMANDS[(args.command, getattr(args, "action", None))]

    async def run() -> int:
        # SIGTERM stops a command like Ctrl-C does: cleanly, so `consume` hands back
        # whatever it has not acked.
        main_task = asyncio.current_task()
        assert main_task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
        async with BrokerClient(
            conn.url, token=conn.token, timeout=conn.timeout, retries=conn.retries
        ) as client:
            return await command(client, args, sys.stdout)

    try:
        return asyncio.run(run())
    except Unavailable as e:
        print(f"ferry: error: {e.message}", file=sys.stderr)
        if e.status == 0:
            print(
                f"ferry: is a broker running at {conn.url}? (set --broker-url or FERRY_BROKER_URL)",
                file=sys.stderr,
            )
        return EXIT_UNREACHABLE
    except BrokerError as e:
        print(f"ferry: error: {e.message} [{e.code}]", file=sys.stderr)
        if isinstance(e, Forbidden):
            print("ferry: the broker knows the token (--broker-token or FERRY_BROKER_TOKEN) "
                  "but its line in the broker's token file does not grant this", file=sys.stderr)
        elif isinstance(e, RateLimited) and e.retry_after is not None:
            print(f"ferry: the token's request rate is spent; retry in {e.retry_after:g} s",
                  file=sys.stderr)
        return EXIT_FAILED
    except UsageError as e:
        print(f"ferry: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ValidationError as e:  # settings the models reject before anything is sent
        problems = "; ".join(
            f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()
        )
        print(f"ferry: error: invalid input: {problems}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:  # --file missing or unreadable
        print(f"ferry: error: {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except asyncio.CancelledError:  # SIGTERM
        return EXIT_TERMINATED
