"""Argo CD against the envtest control plane: a Git server holding this repository, Redis,
and Argo CD's repo-server and application-controller as processes (one `argocd` binary,
built by `make tools`, started as either by ARGOCD_BINARY_NAME, the way Argo CD's own
Procfile runs it outside a cluster).

`GitRepo` is a snapshot of this checkout (tracked and untracked, not ignored files) as one
commit on `main`, served by `git daemon` on 127.0.0.1; `commit(path, text)` changes a file
and pushes, as a user's commit would, and `revert(commit)` undoes one. `ArgoCD.start`
installs Argo CD's CRDs (from the same module release as the binary), its settings (the
shipped argocd-cm, see examples/gitops/argocd-cm-patch.yaml, patched in by the test) and
the default AppProject (argocd-server creates it in a full install), then starts the
servers; `stop` ends them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from testsupport.ports import free_port
from testsupport.processes import Process
from testsupport.waiting import eventually

from kubeplane.building import located
from kubeplane.tools import ARGOCD, KUSTOMIZE

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "argocd"
SETTINGS = ROOT / "examples" / "gitops" / "argocd-cm-patch.yaml"
REPO_PARAMETER = "examples/gitops/repo/repo.yaml"


def _git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "ferry-test", "GIT_AUTHOR_EMAIL": "t@ferry.dev",
           "GIT_COMMITTER_NAME": "ferry-test", "GIT_COMMITTER_EMAIL": "t@ferry.dev"}
    out = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True,
                         check=False, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout


def _start(name: str, argv: list[str], logs: Path, env: dict[str, str] | None = None,
           cwd: Path | None = None) -> Process:
    logs.mkdir(parents=True, exist_ok=True)
    return Process(argv, logs / f"{name}.log", env, name=name, cwd=cwd).start()


@dataclass
class GitRepo:
    work: Path
    url: str
    server: Process

    @classmethod
    def serve(cls, directory: Path) -> GitRepo:
        """This checkout as one commit, its repoURL parameter set to where it is served."""
        work, bare = directory / "work", directory / "served" / "ferry.git"
        work.mkdir(parents=True)
        listed = _git(ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
        for name in filter(None, listed.split("\0")):
            source = ROOT / name
            if source.is_file():  # a tracked file deleted in the checkout is left out
                (work / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, work / name)
        port = free_port()
        url = f"git://127.0.0.1:{port}/ferry.git"
        parameter = yaml.safe_load((work / REPO_PARAMETER).read_text())
        parameter["data"] = {"repoURL": url, "targetRevision": "main"}
        (work / REPO_PARAMETER).write_text(yaml.safe_dump(parameter))
        _git(work, "init", "-q", "-b", "main")
        _git(work, "add", "-A")
        _git(work, "commit", "-q", "-m", "Ferry, as this checkout has it")
        bare.parent.mkdir(parents=True)
        _git(directory, "clone", "-q", "--bare", str(work), str(bare))
        _git(work, "remote", "add", "origin", str(bare))
        # git-daemon itself, not `git daemon`: git would run it as a child of its own, which
        # the die-with-parent hook does not reach, so a killed test run left it serving.
        daemon = Path(_git(ROOT, "--exec-path").strip()) / "git-daemon"
        server = _start("git-daemon", [
            str(daemon), "--reuseaddr", "--listen=127.0.0.1", f"--port={port}",
            f"--base-path={bare.parent}", "--export-all", "--informative-errors",
            str(bare.parent)], directory / "logs")
        return cls(work=work, url=url, server=server)

    def commit(self, path: str, text: str, message: str) -> str:
        """Change one file on main and push it; the new commit's id."""
        (self.work / path).write_text(text)
        _git(self.work, "commit", "-q", "-am", message)
        _git(self.work, "push", "-q", "origin", "main")
        return _git(self.work, "rev-parse", "HEAD").strip()

    def revert(self, commit: str) -> str:
        """`git revert` of one commit, pushed, as a user undoes a bad change; the new id."""
        _git(self.work, "revert", "--no-edit", commit)
        _git(self.work, "push", "-q", "origin", "main")
        return _git(self.work, "rev-parse", "HEAD").strip()

    def read(self, path: str) -> str:
        return (self.work / path).read_text()


@dataclass
class ArgoCD:
    plane: Any
    directory: Path
    servers: list[Process] = field(default_factory=list)

    def start(self) -> None:
        binary = located(ARGOCD) / "argocd"
        kustomize = located(KUSTOMIZE)
        self._install()
        logs, work = self.directory / "logs", self.directory / "work"
        for folder in ("tls", "ssh", "gpg-keys", "gpg-source", "home", "plugins"):
            (work / folder).mkdir(parents=True, exist_ok=True)
        redis_port, repo_port = free_port(), free_port()
        self.servers.append(_start("redis", [
            "redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no"], logs, cwd=work))
        common = {
            "ARGOCD_FAKE_IN_CLUSTER": "true",  # the in-cluster destination is KUBECONFIG's
            "KUBECONFIG": str(self.plane.kubeconfig),
            "ARGOCD_TLS_DATA_PATH": str(work / "tls"),
            "ARGOCD_SSH_DATA_PATH": str(work / "ssh"),
            "HOME": str(work / "home"),
        }
        self.servers.append(_start("repo-server", [
            str(binary), "--port", str(repo_port), "--address", "127.0.0.1",
            "--metrics-address", "127.0.0.1", "--metrics-port", str(free_port()),
            "--redis", f"127.0.0.1:{redis_port}", "--loglevel", "info"], logs, env={
                **common, "ARGOCD_BINARY_NAME": "argocd-repo-server",
                "ARGOCD_GPG_ENABLED": "false",
                "ARGOCD_GNUPGHOME": str(work / "gpg-keys"),
                "ARGOCD_GPG_DATA_PATH": str(work / "gpg-source"),
                "ARGOCD_PLUGINSOCKFILEPATH": str(work / "plugins"),
                # The repo-server runs `kustomize build` and git-verify-wrapper.sh from PATH.
                "PATH": os.pathsep.join([str(kustomize), str(binary.parent),
                                         os.environ["PATH"]])}))
        self.servers.append(_start("application-controller", [
            str(binary), "--namespace", NAMESPACE, "--repo-server", f"127.0.0.1:{repo_port}",
            "--redis", f"127.0.0.1:{redis_port}", "--metrics-port", str(free_port()),
            "--status-processors", "4", "--operation-processors", "4",
            "--app-resync", "30", "--self-heal-timeout-seconds", "2",
            # Each resource's health in the Application's status (off by default since
            # Argo CD 3.0, which keeps it in Redis for its UI): what the test reads.
            "--persist-resource-health",
            "--loglevel", "info"], logs, env={
                **common, "ARGOCD_BINARY_NAME": "argocd-application-controller"}))

    def _install(self) -> None:
        crds = located(ARGOCD).parent / "crds"
        kubectl = self.plane.kubectl
        kubectl("apply", "--server-side", "-k", str(crds))
        for crd in ("applications.argoproj.io", "appprojects.argoproj.io"):
            eventually(lambda name=crd: kubectl(  # type: ignore[misc]
                "get", "crd", name, "-o",
                "jsonpath={.status.conditions[?(@.type=='Established')].status}",
                check=False).stdout == "True", f"CRD {crd} established")
        if kubectl("get", "namespace", NAMESPACE, check=False).returncode != 0:
            kubectl("create", "namespace", NAMESPACE)
        # What Argo CD's install manifest creates: its (empty) settings, its secret, and
        # the default AppProject (argocd-server makes it); Ferry's health checks are
        # patched in by the test, as README says.
        kubectl("apply", "-n", NAMESPACE, "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "List", "items": [
                {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": "argocd-cm",
                              "labels": {"app.kubernetes.io/name": "argocd-cm",
                                         "app.kubernetes.io/part-of": "argocd"}}},
                {"apiVersion": "v1", "kind": "Secret",
                 "metadata": {"name": "argocd-secret",
                              "labels": {"app.kubernetes.io/part-of": "argocd"}}},
                {"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject",
                 "metadata": {"name": "default"},
                 "spec": {"sourceRepos": ["*"],
                          "destinations": [{"server": "*", "namespace": "*"}],
                          "clusterResourceWhitelist": [{"group": "*", "kind": "*"}]}}]}))

    def check(self) -> None:
        """Fail with the log tail of an Argo CD server that stopped."""
        for server in self.servers:
            server.check()

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop(20)

    def tails(self) -> str:
        return "\n".join(f"--- {s.name}\n{s.tail(40)}" for s in self.servers)


def application(plane: Any, name: str) -> dict[str, Any]:
    found = plane.kubectl("get", "-n", NAMESPACE, "application", name, "-o", "json", check=False)
    return json.loads(found.stdout) if found.returncode == 0 else {}


def sync_and_health(app: dict[str, Any]) -> tuple[str, str]:
    status = app.get("status") or {}
    return ((status.get("sync") or {}).get("status", ""),
            (status.get("health") or {}).get("status", ""))


def resource_health(app: dict[str, Any], kind: str, name: str) -> tuple[str, str]:
    """Argo CD's health of one resource of an Application: (status, message)."""
    for res in (app.get("status") or {}).get("resources") or []:
        if res.get("kind") == kind and res.get("name") == name:
            health = res.get("health") or {}
            return health.get("status", ""), health.get("message", "")
    return "", ""


def refresh(plane: Any, name: str) -> None:
    """What a Git webhook does: ask Argo CD to look at the repository now."""
    plane.kubectl("annotate", "-n", NAMESPACE, "application", name,
                  "argocd.argoproj.io/refresh=normal", "--overwrite")
