"""Side-by-side benchmarks: Ferry against Redis Streams, NATS JetStream and RabbitMQ.

Run with `make bench` (or `python -m bench --help`); see bench/README.md.
Not part of the ferry distribution: this folder is a tool run from a checkout.
"""

import sys
from pathlib import Path

# scripts/ (kubeplane, testsupport) is a checkout folder, not installed: put it on the path.
_SCRIPTS = str(Path(__file__).resolve().parents[1] / "scripts")
if _SCRIPTS not in sys.path:
    sys.path.insert(0, _SCRIPTS)
