"""Running a job against a guest image under the job's rules: the allowed-path check, the
checksum, the size limit and cancellation before the image is opened; engine progress mapped
into the job's phases; the report written to ``output.destination``. Shared by the inspect,
profile and compare handlers."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.plugin.errors import ErrorCode, JobError
from app.plugin.handler import HandlerContext
from app.plugin.limits import ResourceLimitExceeded
from app.plugin.outputs import JobPaths, StagedOutput, check_room
from handlers.payloads import ImageRef, OutputSpec
from handlers.tree import GuestTree

if TYPE_CHECKING:
    from handlers.guestimage import Guest, ImagePolicy

#: (phase, percent, message) — the signature of ``HandlerContext.report_progress`` without details
PhaseProgress = Callable[[str, int, str], None]
GIB = 1024 ** 3


def image_facts(guest: Guest) -> dict[str, Any]:
    """The ``image`` section of every report; ``warnings``: what could not be read as the guest sees
    it (an XFS whose log is dirty)."""
    info = guest.image
    return {"path": info.path, "format": info.format, "virtual_size": info.virtual_size,
            "actual_size": info.actual_size, "compressed": info.compressed, "warnings": guest.warnings}


def image_policy(ctx: HandlerContext) -> ImagePolicy:
    """What an image of this job may make qemu open: files in the allowed directories, and at
    most ``max_chain_depth`` backing files."""
    from handlers.guestimage import ImagePolicy

    return ImagePolicy(tuple(ctx.allowed_dirs), ctx.max_chain_depth)


def check_cancel(ctx: HandlerContext, phase: str) -> None:
    if ctx.cancel_requested():
        raise JobError(ErrorCode.CANCELLED, "cancelled on request", phase=phase, recoverable=False)


def phase_reporter(ctx: HandlerContext) -> PhaseProgress:
    """Report a phase, stopping first if the job was cancelled."""
    def report(phase: str, percent: int, message: str) -> None:
        check_cancel(ctx, phase)
        ctx.report_progress(phase, percent, message)
    return report


def _scaled(ctx: HandlerContext, low: int, high: int, label: str) -> Callable[[int, str], None]:
    """An engine progress callback (percent, message) mapped into ``low..high`` of the job."""
    def report(percent: int, message: str) -> None:
        phase = "disk_attach" if percent < 50 else "disk_inspection"
        ctx.report_progress(phase, low + (high - low) * max(0, min(percent, 100)) // 100, f"{label}{message}")
    return report


@contextmanager
def open_image(ctx: HandlerContext, image: ImageRef, *, low: int = 0, high: int = 40,
               label: str = "") -> Iterator[tuple[Guest, GuestTree]]:
    """Check the path, verify the checksum, open the image and find its root tree.

    Progress goes from ``low`` to ``high``: validation (checksum) in the first quarter, then
    disk_attach / disk_inspection from the engine.
    """
    from handlers.guestimage import open_guest, verify_checksum  # the engine loads only when used

    path = ctx.allowed_path(image.path)
    quarter = low + (high - low) // 4
    ctx.report_progress("validation", low, f"{label}checking {path}")
    if image.checksum:
        verify_checksum(path, image.checksum, progress=lambda percent, message: ctx.report_progress(
            "validation", low + (quarter - low) * percent // 100, f"{label}{message}"))
    check_cancel(ctx, "validation")
    limit = ctx.max_disk_size_gb * GIB if ctx.max_disk_size_gb else None
    with open_guest(path, image.format, progress=_scaled(ctx, quarter, high, label),
                    max_size_bytes=limit, policy=image_policy(ctx), limits=ctx.limits) as guest:
        tree = guest.root_tree()
        check_cancel(ctx, "disk_inspection")
        yield guest, tree


def report_destination(ctx: HandlerContext, output: OutputSpec, images: dict[str, ImageRef]) -> Path | None:
    """``output.destination`` checked before any work: inside the allowed directories, none of the
    job's ``images`` (field name -> image), and new unless ``output.overwrite``."""
    files = JobPaths(ctx.allowed_dirs, ctx.job_id)
    for role, image in images.items():
        files.input(image.path, role)
    if not output.destination:
        return None
    # a report's directory is made if missing (inside the allowed directories; the write checks it again)
    ctx.allowed_path(output.destination, must_exist=False).parent.mkdir(parents=True, exist_ok=True)
    return files.output(output.destination, "output.destination", overwrite=output.overwrite,
                        overwrite_option="output.overwrite")


def write_output(ctx: HandlerContext, destination: Path | None, overwrite: bool, data: dict[str, Any]) -> str | None:
    """Write ``data`` as JSON to the checked ``destination`` (``report_destination``); its path. A
    report larger than a result may be (``max_result_bytes``) is not written: the job fails
    ``RESOURCE_LIMIT``, as its result would."""
    if destination is None:
        return None
    encoded = (json.dumps(data, indent=2, default=str) + "\n").encode()
    if len(encoded) > ctx.limits.max_result_bytes:
        raise ResourceLimitExceeded(f"the report {destination}", "max_result_bytes", ctx.limits.max_result_bytes,
                                    len(encoded))
    check_room({destination: len(encoded)}, ctx.limits.output_reserve_mb)
    with StagedOutput(destination, ctx.allowed_dirs, ctx.job_id, overwrite=overwrite) as staged:
        staged.write_bytes(encoded)
        staged.commit()
    return str(destination)
