"""A real local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager).

Built from the Go module in tests/envtest/go/ (see `building`), started on loopback
with its own PKI (see `pki`, `planes`). Used by `scripts/controlplane`, by the pytest
fixtures in tests/envtest/conftest.py and by `make demo`: one implementation for all.
"""

from kubeplane.building import Binaries, BuildError, Versions, ensure_built, find_kubectl
from kubeplane.planes import ControlPlane, ControlPlaneError, start, stop

__all__ = [
    "Binaries",
    "BuildError",
    "ControlPlane",
    "ControlPlaneError",
    "Versions",
    "ensure_built",
    "find_kubectl",
    "start",
    "stop",
]
