"""The peer tools tests run beside the control plane, each from its own Go module folder.

Each folder under tests/envtest/tools/ pins its own dependencies (their k8s.io versions
differ from the control plane's and from each other's), so none shares a go.mod.
`scripts/controlplane tools NAME...` (and `make tools`) builds them into the cache.
"""

from __future__ import annotations

from kubeplane.building import REPO, GoTool

TOOLS_DIR = REPO / "tests" / "envtest" / "tools"


def _argocd_ldflags(version: str) -> list[str]:
    # Argo CD reports this as its version (`argocd version --client`); default 99.99.99.
    return ["-s", "-w", f"-X github.com/argoproj/argo-cd/v3/common.version={version.lstrip('v')}"]


# One binary: application-controller, repo-server or the CLI by ARGOCD_BINARY_NAME; its
# CRDs (Application, AppProject, ApplicationSet) come from the same module release, and so
# does git-verify-wrapper.sh, which the repo-server runs for every revision it renders.
ARGOCD = GoTool(name="argocd", module_dir=TOOLS_DIR / "argocd",
                key_module="github.com/argoproj/argo-cd/v3",
                packages={"argocd": "github.com/argoproj/argo-cd/v3/cmd"},
                ldflags=_argocd_ldflags, renames={"cmd": "argocd"},
                assets={"manifests/crds": "crds",
                        "hack/git-verify-wrapper.sh": "bin/git-verify-wrapper.sh"})

# Argo CD's repo-server runs `kustomize build` for every kustomize source.
KUSTOMIZE = GoTool(name="kustomize", module_dir=TOOLS_DIR / "kustomize",
                   key_module="sigs.k8s.io/kustomize/kustomize/v5",
                   packages={"kustomize": "sigs.k8s.io/kustomize/kustomize/v5"})

# cli-utils' kstatus over objects read on stdin (tests/envtest/tools/kstatus/main.go).
KSTATUS = GoTool(name="kstatus", module_dir=TOOLS_DIR / "kstatus",
                 key_module="sigs.k8s.io/cli-utils",
                 packages={"kstatus": "ferry.dev/tools/kstatus"})


def _keda_ldflags(version: str) -> list[str]:
    # KEDA logs this as its version at start (default "main").
    return ["-s", "-w", f"-X github.com/kedacore/keda/v2/version.Version={version}"]


# KEDA's operator (scaling loop, ScaledObject controller, gRPC metrics service) and its
# metrics API server (keda-adapter); the CRDs come from the same module's config/crd.
KEDA = GoTool(name="keda", module_dir=TOOLS_DIR / "keda", key_module="github.com/kedacore/keda/v2",
              packages={"keda-operator": "github.com/kedacore/keda/v2/cmd/operator",
                        "keda-adapter": "github.com/kedacore/keda/v2/cmd/adapter"},
              ldflags=_keda_ldflags, renames={"operator": "keda-operator",
                                              "adapter": "keda-adapter"})

TOOLS = {tool.name: tool for tool in (ARGOCD, KUSTOMIZE, KSTATUS, KEDA)}
