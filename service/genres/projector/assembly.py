"""The projector, assembled: its store on the kernel's engine and its subscriber on the kernel's
broker (``genres.kernel``)."""

from __future__ import annotations

from genres.kernel import Kernel, RoleHandle
from genres.observability.progress import CommittedProgress
from genres.projector.entry import register_projector
from genres.projector.rule import ProjectionReport, ProjectionStore
from genres.projector.store import SqlProjectionStore

__all__ = ["assemble"]

ROLE = "projector"


def assemble(kernel: Kernel, *, store: ProjectionStore | None = None) -> RoleHandle:
    """Subscribe the projector on the kernel's broker (it runs once the root starts that);
    ``store``: instead of PostgreSQL through the kernel's engine."""
    metrics, watchdog = kernel.metrics, kernel.watchdog

    def observe(report: ProjectionReport) -> None:
        metrics.observe_projection(written=report.written, stale=report.stale)

    handle = RoleHandle(ROLE)
    handle.subscribed = register_projector(
        kernel.broker(),
        settings=kernel.settings,
        store=store if store is not None else SqlProjectionStore(kernel.engine),
        publisher=kernel.publisher,
        on_projected=observe,
        on_error=watchdog.reporter(ROLE),
    )
    # It commits after storing: its position runs ahead of the work.
    watchdog.watch(ROLE, CommittedProgress(handle.subscribed.consumer))
    return handle
