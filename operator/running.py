"""Run kopf with Ferry's handlers, settings and clients, next to /metrics and /healthz."""

from __future__ import annotations

import asyncio
import logging

import kopf

from ferry.kit.serving import listening
from ferry.operator import bookkeeping, handlers, serving
from ferry.operator.clients.brokers import Brokers
from ferry.operator.clients.errors import KubeError
from ferry.operator.clients.kube import KubeClient, load_credentials
from ferry.operator.handlers import watching
from ferry.operator.handlers.common import Runtime
from ferry.operator.metrics import CACHED_TOKENS, READY
from ferry.operator.reconcile import images
from ferry.operator.reconcile.metadata import FINALIZER
from ferry.operator.reconcile.workloads import PodDefaults
from ferry.operator.settings import OperatorSettings

log = logging.getLogger("ferry.operator")


def kopf_settings() -> kopf.OperatorSettings:
    s = kopf.OperatorSettings()
    s.persistence.finalizer = FINALIZER
    # Progress and diff-base in status.kopf: written with the pass's own status PATCH.
    s.persistence.progress_storage = bookkeeping.progress_storage()
    s.persistence.diffbase_storage = bookkeeping.diffbase_storage()
    s.execution.max_workers = 4
    s.networking.request_timeout = 60
    # Ride out an API server whose watch cache is (re)initializing (429) or restarting for
    # about three minutes before kopf gives up on a watch (its default is under a minute).
    s.networking.error_backoffs = [1, 2, 4, 8, 15, 30, 30, 30, 30, 30]
    # A watch stream is renewed every 10 minutes (client-go's reflectors: 5-10): at 60 s the
    # renewals of the dozen streams were most of an idle operator's requests. A dead stream
    # is still noticed within a minute (kopf's inactivity_timeout, 70 s, against the API
    # server's bookmarks every 60 s).
    s.watching.server_timeout = 600
    # Children are watched through a server-side selector: the operator never lists or
    # streams other people's ConfigMaps, Services or workloads.
    for api_version, plural in watching.CHILD_KINDS:
        s.watching.label_selectors[api_version, plural] = watching.CHILD_SELECTOR
    return s


def peering_resource(settings: OperatorSettings) -> str:
    """The kopf peering resource this operator would use (cluster-wide or namespaced)."""
    return "kopfpeerings" if settings.namespaces else "clusterkopfpeerings"


def peering_plan(settings: OperatorSettings, installed: bool) -> tuple[str | None, str | None]:
    """(peering name or None for standalone, a warning to log) - no side effects.

    Without kopf's peering CRDs kopf would wait silently forever: say so, and run
    standalone unless peering was asked for explicitly.
    """
    if settings.peering is None or installed:
        return settings.peering, None
    crd = f"{peering_resource(settings)}.kopf.dev"
    if settings.peering_required:
        return settings.peering, (
            f"waiting for the CRD {crd} (kopf peering {settings.peering!r} was asked for); "
            "install it with: kubectl apply -f manifests/operator/peering-crds.yaml")
    return None, (
        f"kopf's peering CRD {crd} is not installed: running standalone, so only one "
        "replica may run; kubectl apply -f manifests/operator/peering-crds.yaml "
        "-f manifests/operator/peering.yaml to run more as hot standbys")


async def run(settings: OperatorSettings) -> None:
    registry = kopf.OperatorRegistry()
    handlers.register(registry, settings)
    kube = KubeClient(load_credentials(settings.kubeconfig))
    brokers = Brokers()
    peering, warning = peering_plan(settings, await _peering_installed(kube, settings))
    if warning:
        log.warning(warning)
    defaults = PodDefaults(image=settings.image or await _own_image(kube, settings),
                           pull_secrets=settings.image_pull_secrets)
    log.info("brokers and pipelines that name no image run the operator's image",
             extra={"image": defaults.image})
    ready, stop = asyncio.Event(), asyncio.Event()
    rt = Runtime(settings=settings, kube=kube, brokers=brokers, defaults=defaults)
    CACHED_TOKENS.set_function(lambda: len(rt.tokens))
    operator = asyncio.create_task(kopf.operator(
        registry=registry,
        settings=kopf_settings(),
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        standalone=peering is None,
        peering_name=peering,
        priority=settings.priority,
        ready_flag=ready,
        stop_flag=stop,
        memo=kopf.Memo(runtime=rt),
    ), name="kopf")
    watcher = asyncio.create_task(_mark_ready(ready), name="ready-gauge")
    try:
        async with listening(serving.app(ready, operator), settings.metrics_host,
                             settings.metrics_port) as port:
            log.info("serving /metrics and /healthz", extra={
                "host": settings.metrics_host, "port": port,
                "namespaces": settings.namespaces or "cluster-wide",
                "peering": peering or "standalone"})
            await operator
    finally:
        watcher.cancel()
        await brokers.close()
        await kube.close()
        log.info("ferry-operator stopped")


async def _peering_installed(kube: KubeClient, settings: OperatorSettings) -> bool:
    if settings.peering is None:
        return False
    try:
        return await kube.serves("kopf.dev/v1", peering_resource(settings))
    except KubeError:  # kopf itself retries an API server that does not answer yet
        return True


async def _own_image(kube: KubeClient, settings: OperatorSettings) -> str:
    """The operator's own image (its pod's), else its release: never fatal."""
    if settings.pod is None:
        return images.release()
    namespace, name = settings.pod
    try:
        return images.own(await kube.get("v1", "Pod", namespace, name))
    except KubeError as e:
        log.warning("could not read the operator's own pod; running its release", extra={
            "pod": f"{namespace}/{name}", "error": str(e), "image": images.release()})
        return images.release()


async def _mark_ready(ready: asyncio.Event) -> None:
    await ready.wait()
    READY.set(1)
