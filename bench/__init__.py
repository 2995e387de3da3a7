"""Side-by-side benchmarks: Ferry against Redis Streams, NATS JetStream and RabbitMQ.

Run with `make bench` (or `python -m bench --help`); see bench/README.md.
Not part of the ferry distribution: this folder is a tool run from a checkout.
"""
