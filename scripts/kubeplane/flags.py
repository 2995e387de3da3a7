"""Where a plane keeps its files, and the command lines of its three servers (no side effects).

Aggregation layer (for the External Metrics APIService that serves queue lag): the API
server gets a front-proxy CA and client certificate and the --requestheader-* flags, so
an aggregated API server can authenticate the API server's proxied requests.
Routing to a server on this machine: endpoint addresses may not be loopback (the API
server rejects 127.0.0.0/8 in Endpoints and EndpointSlices) and there is no kube-proxy
for ClusterIPs, so aggregator routing stays off (the default) and the APIService points
at a Service of type ExternalName `localhost`; see `kubeplane.aggregation`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kubeplane.pki import KeyPair

SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
APISERVER_HOSTS = ("127.0.0.1", "localhost", "10.96.0.1", "kubernetes", "kubernetes.default",
                   "kubernetes.default.svc", "kubernetes.default.svc.cluster.local")
FRONT_PROXY_CLIENT = "front-proxy-client"
HPA_SYNC_PERIOD = "5s"


@dataclass(frozen=True)
class PlanePaths:
    root: Path

    def _pair(self, name: str) -> KeyPair:
        return KeyPair(self.root / "pki" / f"{name}.crt", self.root / "pki" / f"{name}.key")

    @property
    def ca(self) -> KeyPair:
        return self._pair("ca")

    @property
    def apiserver(self) -> KeyPair:
        return self._pair("apiserver")

    @property
    def admin(self) -> KeyPair:
        return self._pair("admin")

    @property
    def controller_manager(self) -> KeyPair:
        return self._pair("controller-manager")

    @property
    def front_proxy_ca(self) -> KeyPair:
        return self._pair("front-proxy-ca")

    @property
    def front_proxy_client(self) -> KeyPair:
        return self._pair("front-proxy-client")

    @property
    def service_account_key(self) -> Path:
        return self.root / "pki" / "sa.key"

    @property
    def service_account_pub(self) -> Path:
        return self.root / "pki" / "sa.pub"

    @property
    def controller_manager_kubeconfig(self) -> Path:
        return self.root / "controller-manager.kubeconfig"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def logs(self) -> Path:
        return self.root / "logs"


def etcd(binary: Path, paths: PlanePaths, ports: dict[str, int]) -> list[str]:
    client = f"http://127.0.0.1:{ports['etcd_client']}"
    peer = f"http://127.0.0.1:{ports['etcd_peer']}"
    return [
        str(binary), "--name=envtest", f"--data-dir={paths.etcd_data}",
        f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=envtest={peer}",
        # A throwaway test store: durability across power loss is not worth the fsyncs.
        "--unsafe-no-fsync", "--log-level=warn",
    ]


def apiserver(binary: Path, paths: PlanePaths, ports: dict[str, int]) -> list[str]:
    return [
        str(binary),
        f"--etcd-servers=http://127.0.0.1:{ports['etcd_client']}",
        "--bind-address=127.0.0.1", f"--secure-port={ports['apiserver']}",
        "--advertise-address=127.0.0.1",
        # The `kubernetes` Service's endpoints would be 127.0.0.1, which validation refuses.
        "--endpoint-reconciler-type=none",
        f"--cert-dir={paths.root / 'pki'}",
        f"--tls-cert-file={paths.apiserver.cert}", f"--tls-private-key-file={paths.apiserver.key}",
        f"--client-ca-file={paths.ca.cert}",
        "--authorization-mode=Node,RBAC",
        # On by default on OpenShift: an owner reference with blockOwnerDeletion needs update
        # on the owner's finalizers, so operators tested here hold the RBAC it takes.
        "--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
        f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={paths.service_account_pub}",
        f"--service-account-signing-key-file={paths.service_account_key}",
        "--allow-privileged=true",
        # Aggregation layer: how aggregated API servers recognise the API server's proxy.
        f"--requestheader-client-ca-file={paths.front_proxy_ca.cert}",
        f"--requestheader-allowed-names={FRONT_PROXY_CLIENT}",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-uid-headers=X-Remote-Uid",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={paths.front_proxy_client.cert}",
        f"--proxy-client-key-file={paths.front_proxy_client.key}",
        "--enable-aggregator-routing=false",
        "--profiling=false",
    ]


def controller_manager(binary: Path, paths: PlanePaths, ports: dict[str, int]) -> list[str]:
    kubeconfig = paths.controller_manager_kubeconfig
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}", f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1", f"--secure-port={ports['controller_manager']}",
        f"--cert-dir={paths.root / 'controller-manager'}",
        # Every default controller: garbage collector, deployment, replicaset, statefulset,
        # horizontal-pod-autoscaler, namespace, serviceaccount(-token), disruption, ...
        "--controllers=*",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={paths.service_account_key}",
        f"--root-ca-file={paths.ca.cert}",
        f"--cluster-signing-cert-file={paths.ca.cert}",
        f"--cluster-signing-key-file={paths.ca.key}",
        f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
        f"--horizontal-pod-autoscaler-sync-period={HPA_SYNC_PERIOD}",
        "--leader-elect=false",
        "--profiling=false",
    ]
