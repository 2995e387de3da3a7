"""The operator's Prometheus metrics (served on /metrics next to /healthz)."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILES = Counter("ferry_operator_reconciles_total", "Reconcile passes by kind and outcome",
                     ["kind", "outcome"], registry=REGISTRY)
RECONCILE_SECONDS = Histogram("ferry_operator_reconcile_seconds", "Time per reconcile pass",
                              ["kind"], registry=REGISTRY)
CHILD_CHANGES = Counter("ferry_operator_child_changes_total",
                        "Children created, updated (drift repaired) or pruned",
                        ["kind", "action"], registry=REGISTRY)
DEFERRED_PASSES = Counter("ferry_operator_deferred_timer_passes_total",
                          "Timer passes skipped while new resources waited for their first",
                          ["kind", "timer"], registry=REGISTRY)
BROKER_FAILURES = Counter("ferry_operator_broker_failures_total",
                          "Broker calls that failed, by problem", ["problem"], registry=REGISTRY)
# One per Queue's token Secret in use; back to 0 when the Queues are gone (a long-running
# operator must not grow with every Queue it ever saw).
CACHED_TOKENS = Gauge("ferry_operator_cached_tokens",
                      "Broker tokens the operator holds in memory", registry=REGISTRY)
READY = Gauge("ferry_operator_ready", "1 once the operator watches its resources",
              registry=REGISTRY)
# Replicas against lag, for both providers (the dashboard's "Replicas against backlog").
SCALED_REPLICAS = Gauge("ferry_operator_consumergroup_replicas",
                        "Current replicas of an autoscaled ConsumerGroup's target",
                        ["namespace", "group", "provider"], registry=REGISTRY)
SCALED_BACKLOG = Gauge("ferry_operator_consumergroup_backlog",
                       "Backlog (ready + in flight) an autoscaled ConsumerGroup scales on",
                       ["namespace", "group"], registry=REGISTRY)
