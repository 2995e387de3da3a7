"""What tests, `make demo` and the envtest control plane share to run local processes:
free loopback ports, waiting for a condition, child processes that die with their parent,
an action repeated on a background thread while a block runs, a Service-like proxy that
sends each connection to the ready broker.

Waits poll a condition with a generous deadline (a liveness bound on a loaded machine,
never a timing assertion); nothing here sleeps for synchronisation.
"""
