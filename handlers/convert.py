"""``guestkit.convert``: converts a disk image between raw, qcow2, vmdk, vhdx and vdi."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from app.plugin.errors import ErrorCode, JobError
from app.plugin.handler import Handler, HandlerContext, HandlerResult
from app.plugin.outputs import JobPaths, StagedOutput, check_room
from handlers.guestimage import ImageInfo, pinned_image, verify_checksum
from handlers.guestimage.qemu import COMPRESSION_OPTIONS, compare_images, convert_image, measure_image
from handlers.imagejob import image_policy
from handlers.payloads import ConvertPayloadV1

GiB = 1024 ** 3


def check_image_size(ctx: HandlerContext, info: ImageInfo) -> None:
    """The job's disk size limit (``constraints.maximum_disk_size_gb``)."""
    if ctx.max_disk_size_gb is not None and info.virtual_size > ctx.max_disk_size_gb * GiB:
        raise JobError(ErrorCode.UNSUPPORTED_IMAGE,
                       f"image virtual size {info.virtual_size} bytes exceeds maximum_disk_size_gb="
                       f"{ctx.max_disk_size_gb}",
                       details={"virtual_size": info.virtual_size, "maximum_disk_size_gb": ctx.max_disk_size_gb},
                       recoverable=False)


def _checksum_progress(ctx: HandlerContext, low: int, high: int) -> Any:
    return lambda percent, message: ctx.report_progress("validation", low + (high - low) * percent // 100, message)


class ConvertHandler(Handler):
    operation = "guestkit.convert"
    payload_models = {1: ConvertPayloadV1}
    features = ("convert",)

    def execute(self, ctx: HandlerContext, payload: BaseModel) -> HandlerResult:
        assert isinstance(payload, ConvertPayloadV1)
        started = time.monotonic()
        ctx.report_progress("validation", 0, "checking paths")
        paths = JobPaths(ctx.allowed_dirs, ctx.job_id)
        source = paths.input(payload.source.path, "source.path")
        overwrite = payload.options.overwrite
        target = paths.output(payload.target.path, "target.path", overwrite=overwrite)
        if payload.source.checksum:
            verify_checksum(source, payload.source.checksum, _checksum_progress(ctx, 1, 10))
        ctx.report_progress("disk_attach", 10, "reading source image")
        with pinned_image(source, payload.source.format, image_policy(ctx)) as image:
            assert image.info is not None
            check_image_size(ctx, image.info)
            need = measure_image(image.qemu_name, image.info.format, payload.target.format,
                                 sparse=payload.options.preserve_sparse)
            check_room({target: need}, ctx.limits.output_reserve_mb)
            with paths.stage(target, overwrite=overwrite) as staged:
                compress, verified, notes = self._convert(ctx, payload, image.qemu_name, image.info, staged)
        with pinned_image(target, payload.target.format, image_policy(ctx)) as written:
            result_info = written.info
            assert result_info is not None
        info = image.info
        target_format = payload.target.format
        data = {
            "source": {"path": str(source), "format": info.format, "virtual_size": info.virtual_size,
                       "actual_size": info.actual_size, "checksum_verified": bool(payload.source.checksum)},
            "target": {"path": str(target), "format": target_format, "virtual_size": result_info.virtual_size,
                       "actual_size": result_info.actual_size, "compressed": compress,
                       "subformat": "streamOptimized" if compress and target_format == "vmdk" else None},
            "verified": verified,
            "sparse": payload.options.preserve_sparse,
            "notes": notes,
            "duration_seconds": round(time.monotonic() - started, 3),
        }
        ctx.report_progress("cleanup", 100, "done")
        return HandlerResult(data=data, primary=str(target), disk_read_bytes=info.actual_size,
                             disk_write_bytes=Path(target).stat().st_size)

    def _convert(self, ctx: HandlerContext, payload: ConvertPayloadV1, source: str, info: ImageInfo,
                 staged: StagedOutput) -> tuple[bool, bool | None, list[str]]:
        """Convert the checked source (its pinned qemu name) into ``staged`` and put it in place;
        (compressed, verified, notes)."""
        target_format = payload.target.format
        compress = payload.target.compression and target_format in COMPRESSION_OPTIONS
        notes = []
        if payload.target.compression and not compress:
            notes.append(f"{target_format} has no compressed variant; written uncompressed")
        ctx.report_progress("result_generation", 15, f"converting {info.format} to {target_format}")
        convert_image(
            source, info.format, staged.path, target_format, compress=compress,
            sparse=payload.options.preserve_sparse,
            progress=lambda pct: ctx.report_progress(
                "result_generation", 15 + int(pct * 0.7), f"converting: {pct:.1f}%",
                {"step": "convert", "convert_percent": pct}),
            cancelled=ctx.cancel_requested,
        )
        verified: bool | None = None
        if payload.options.verify_after_convert:
            ctx.report_progress("result_generation", 86, "verifying the converted image")
            verified, message = compare_images(source, info.format, staged.path, target_format,
                                               cancelled=ctx.cancel_requested)
            if not verified:
                raise JobError(ErrorCode.EXECUTION_ERROR, f"converted image differs from the source: {message}",
                               details={"source": info.path, "target": str(staged.target)}, recoverable=False)
        staged.commit()
        ctx.report_progress("cleanup", 95, "conversion finished")
        return bool(compress), verified, notes
