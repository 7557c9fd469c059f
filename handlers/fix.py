"""``guestkit.fix``: offline repairs written to a fixed copy of the image (the source stays untouched)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from app.plugin.errors import ErrorCode, JobError
from app.plugin.handler import Handler, HandlerContext, HandlerResult
from app.plugin.limits import ResourceLimitExceeded
from app.plugin.outputs import JobPaths, check_room
from handlers.convert import check_image_size
from handlers.guestimage import ImageInfo, PinnedImage, open_guest, open_pinned, pinned_image, verify_checksum
from handlers.guestimage.extwrite import ExtWriteError, ExtWriter
from handlers.guestimage.qemu import COMPRESSION_OPTIONS, convert_image, measure_image
from handlers.guestimage.repairs import PLANNERS, Plan, RepairError, apply_edits, refuse_unwritable
from handlers.imagejob import image_policy
from handlers.payloads import FixOperation, FixPayloadV1


def _fail(code: ErrorCode, message: str, **details: Any) -> JobError:
    return JobError(code, message, details=details, recoverable=False)


def _raise_if_fatal(exc: RepairError, index: int, op: FixOperation) -> None:
    """Wrong options (VALIDATION_ERROR) and refusals with a code of their own (a guest link) end the
    job whatever its execution policy; other failures are the policy's to weigh."""
    if exc.invalid or exc.code is not None:
        raise _fail(exc.code or ErrorCode.VALIDATION_ERROR, f"operations[{index}] ({op.type}): {exc}",
                    **exc.details) from exc


def _change(index: int, op: FixOperation, status: str, plan: Plan | None = None,
            error: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"index": index, "type": op.type, "status": status,
                             "target": plan.target if plan else None,
                             "before": plan.before if plan else None, "after": plan.after if plan else None,
                             "notes": plan.notes if plan else []}
    if plan is not None:
        entry["edits"] = [{"kind": e.kind, "path": e.path or e.device} for e in plan.edits]
    if error is not None:
        entry["error"] = error
    return entry


class _Paths:
    """Every path of the payload, resolved inside the allowed directories before any work; no output
    may be an input or another output (``JobPaths``)."""

    def __init__(self, ctx: HandlerContext, payload: FixPayloadV1) -> None:
        self.files = JobPaths(ctx.allowed_dirs, ctx.job_id)
        self.source = self.files.input(payload.image.path, "image.path")
        self.overwrite = payload.output.overwrite
        fixed = payload.output.fixed_image
        if fixed is None and not payload.in_place and not payload.dry_run:
            raise _fail(ErrorCode.VALIDATION_ERROR,
                        "output.fixed_image is required (or in_place: true to repair the source itself)")
        self.output: Path | None = None
        if fixed:
            self.output = self.files.output(fixed, "output.fixed_image", overwrite=self.overwrite,
                                            overwrite_option="output.overwrite")
        elif payload.in_place:
            self.output = self.source
        self.backup: Path | None = None
        if payload.image.create_backup:
            wanted = payload.image.backup_path or f"{self.source}.backup"
            self.backup = self.files.output(wanted, "image.backup_path")
        self.log: Path | None = None
        if payload.output.log_path:
            self.log = self.files.output(payload.output.log_path, "output.log_path", overwrite=self.overwrite,
                                         overwrite_option="output.overwrite")


MiB = 1024 * 1024


def _check_room(ctx: HandlerContext, paths: _Paths, image: PinnedImage, work: Path) -> None:
    """The raw working copy within the work directory's limit, and the working copy, the fixed
    image and the backup each with room on their file systems, before anything is written."""
    info = image.info
    assert info is not None and paths.output is not None
    need = measure_image(image.qemu_name, info.format, "raw")
    limit = ctx.limits.max_work_dir_mb
    if need > limit * MiB:
        raise ResourceLimitExceeded("the raw working copy of the image", "max_work_dir_mb", limit,
                                    -(-need // MiB), "MiB")
    needs = {work: need, paths.output: need}  # the fixed image holds what the working copy does
    if paths.backup is not None:
        needs[paths.backup] = info.actual_size or 0
    check_room(needs, ctx.limits.output_reserve_mb)


class FixHandler(Handler):
    operation = "guestkit.fix"
    payload_models = {1: FixPayloadV1}
    features = ("fix",)

    def execute(self, ctx: HandlerContext, payload: BaseModel) -> HandlerResult:
        assert isinstance(payload, FixPayloadV1)
        started = time.monotonic()
        ctx.report_progress("validation", 0, "checking paths and options")
        paths = _Paths(ctx, payload)
        unknown = [op.type for op in payload.operations if op.type not in PLANNERS]
        if unknown:
            raise _fail(ErrorCode.VALIDATION_ERROR, f"unknown operations {unknown}")
        if payload.image.checksum:
            verify_checksum(paths.source, payload.image.checksum,
                            lambda pct, msg: ctx.report_progress("validation", 1 + pct * 8 // 100, msg))
        with pinned_image(paths.source, payload.image.format, image_policy(ctx)) as image:
            info = image.info
            assert info is not None
            check_image_size(ctx, info)
            if info.snapshots or info.has_backing_file or info.external_files:
                raise _fail(ErrorCode.UNSUPPORTED_IMAGE,
                            "images with snapshots, backing files or external data files are not fixed "
                            "(they would be silently flattened)",
                            snapshots=[s.get("name") for s in info.snapshots], backing_file=info.backing_file,
                            external_files=info.external_files)
            if payload.dry_run:
                self._refuse_unwritable(ctx, payload, image)
                return self._dry_run(ctx, payload, paths, image, started)
            work = ctx.work_dir / f"fix-{ctx.job_id}.raw"
            _check_room(ctx, paths, image, work)  # the cheap refusal first
            self._refuse_unwritable(ctx, payload, image)
            try:
                return self._fix(ctx, payload, paths, image, work, started)
            finally:
                ctx.report_progress("cleanup", 99, "removing the working copy")
                if work.exists():
                    work.unlink()

    def _refuse_unwritable(self, ctx: HandlerContext, payload: FixPayloadV1, image: PinnedImage) -> None:
        """``UNSUPPORTED_OPERATION`` before any copy is made when an operation would write to a
        filesystem fix cannot write (XFS, btrfs, NTFS): the source image, read-only, says where."""
        ctx.report_progress("disk_inspection", 5, "checking that every change lands on a writable filesystem")
        with open_pinned(image, limits=ctx.limits) as guest:
            guest.root_tree()
            for index, op in enumerate(payload.operations):
                try:
                    refuse_unwritable(guest, op.type, op.options)
                except RepairError as exc:
                    _raise_if_fatal(exc, index, op)

    # -- dry run ---------------------------------------------------------------------------------------
    def _dry_run(self, ctx: HandlerContext, payload: FixPayloadV1, paths: _Paths, image: PinnedImage,
                 started: float) -> HandlerResult:
        info = image.info
        assert info is not None
        ctx.report_progress("disk_attach", 10, "opening the image read-only")
        changes: list[dict[str, Any]] = []
        with open_pinned(image, limits=ctx.limits) as guest:
            guest.root_tree()
            ctx.report_progress("disk_inspection", 30, "planning operations")
            for index, op in enumerate(payload.operations):
                try:
                    plan = PLANNERS[op.type](guest, op.options)
                except RepairError as exc:
                    _raise_if_fatal(exc, index, op)
                    changes.append(_change(index, op, "would_fail", error=str(exc)))
                    if payload.execution_policy.stop_on_error:
                        break
                    continue
                changes.append(_change(index, op, "planned" if plan.changes else "unchanged", plan))
        data = self._data(payload, paths, info, changes, {}, started, dry_run=True)
        ctx.report_progress("result_generation", 95, "plan ready")
        self._write_log(paths, data)
        ctx.report_progress("cleanup", 100, "dry run complete")
        return HandlerResult(data=data, primary=None)

    # -- real run ----------------------------------------------------------------------------------------
    def _fix(self, ctx: HandlerContext, payload: FixPayloadV1, paths: _Paths, image: PinnedImage, work: Path,
             started: float) -> HandlerResult:
        info = image.info
        assert paths.output is not None and info is not None
        ctx.report_progress("disk_attach", 10, f"copying the {info.format} image to a raw working copy")
        convert_image(image.qemu_name, info.format, work, "raw", cancelled=ctx.cancel_requested,
                      progress=lambda pct: ctx.report_progress("disk_attach", 10 + int(pct * 0.2),
                                                               f"working copy: {pct:.0f}%"))
        changes: list[dict[str, Any]] = []
        touched: set[str] = set()
        fsck_results: dict[str, Any] = {}
        failed = False
        count = len(payload.operations)
        for index, op in enumerate(payload.operations):
            if ctx.cancel_requested():
                raise _fail(ErrorCode.CANCELLED, "cancelled between fix operations")
            ctx.report_progress("disk_inspection", 30 + 40 * index // count, f"{op.type} ({index + 1}/{count})")
            try:
                with open_guest(work, "raw", limits=ctx.limits) as guest:
                    guest.root_tree()
                    plan = PLANNERS[op.type](guest, op.options)
                done, fsck = apply_edits(str(work), plan.edits)
            except RepairError as exc:
                _raise_if_fatal(exc, index, op)
                changes.append(_change(index, op, "failed", error=str(exc)))
                failed = True
                if payload.execution_policy.stop_on_error:
                    raise _fail(ErrorCode.EXECUTION_ERROR, f"operations[{index}] ({op.type}) failed: {exc}; "
                                "stopped (stop_on_error), nothing was written", changes=changes) from exc
                continue
            touched |= done
            if fsck:
                fsck_results.update(fsck)
                plan.before = {d: {"errors": r["errors_before"]} for d, r in fsck.items()}
                plan.after = {d: {"errors": r["errors_after"], "repair_exit_code": r["repair_exit_code"]}
                              for d, r in fsck.items()}
            changes.append(_change(index, op, "applied" if plan.changes else "unchanged", plan))
        validation = self._finish_filesystems(ctx, work, touched, payload.execution_policy.validate_before_commit)
        self._publish(ctx, paths, image, work)
        data = self._data(payload, paths, info, changes, validation, started, dry_run=False)
        data["partial_failure"] = failed
        data["fsck"] = fsck_results
        self._write_log(paths, data)
        ctx.report_progress("cleanup", 98, "fixed image written")
        return HandlerResult(data=data, primary=str(paths.output),
                             artifacts=[str(p) for p in (paths.backup, paths.log) if p is not None],
                             disk_read_bytes=info.actual_size, disk_write_bytes=paths.output.stat().st_size)

    def _finish_filesystems(self, ctx: HandlerContext, work: Path, touched: set[str],
                            validate: bool) -> dict[str, Any]:
        """e2fsck -fy on every modified filesystem, then (validate_before_commit) e2fsck -fn must be clean."""
        results: dict[str, Any] = {}
        with open_guest(work, "raw") as guest:
            offsets = {fs.device: fs.offset_bytes for fs in guest.filesystems
                       if fs.device in touched and fs.type in ("ext2", "ext3", "ext4")}
        for device, offset in sorted(offsets.items()):
            assert offset is not None
            writer = ExtWriter(work, offset)
            try:
                repair_code, _ = writer.fsck(repair=True)
                entry: dict[str, Any] = {"e2fsck_repair_exit_code": repair_code}
                if validate:
                    ctx.report_progress("disk_inspection", 72, f"validating {device}")
                    check_code, output = writer.fsck(repair=False)
                    entry["e2fsck_check_exit_code"] = check_code
                    if check_code != 0:
                        raise _fail(ErrorCode.EXECUTION_ERROR,
                                    f"{device} is not clean after the fix; nothing was written",
                                    device=device, e2fsck=output[-1000:])
            except ExtWriteError as exc:
                raise _fail(ErrorCode.EXECUTION_ERROR, str(exc), device=device) from exc
            results[device] = entry
        return {"validated": validate, "filesystems": results}

    def _publish(self, ctx: HandlerContext, paths: _Paths, image: PinnedImage, work: Path) -> None:
        info = image.info
        assert paths.output is not None and info is not None
        if paths.backup is not None:
            ctx.report_progress("result_generation", 75, f"backing up the source to {paths.backup}")
            with paths.files.stage(paths.backup) as backup:
                backup.copy_from(image.raw_path)  # the file checked, not whatever has its name now
                backup.commit()
        in_place = paths.output == paths.source
        with paths.files.stage(paths.output, overwrite=in_place or paths.overwrite) as staged:
            convert_image(work, "raw", staged.path, info.format,
                          compress=info.compressed and info.format in COMPRESSION_OPTIONS,
                          cancelled=ctx.cancel_requested,
                          progress=lambda pct: ctx.report_progress("result_generation", 76 + int(pct * 0.2),
                                                                   f"writing the fixed image: {pct:.0f}%"))
            staged.commit()

    def _data(self, payload: FixPayloadV1, paths: _Paths, info: ImageInfo, changes: list[dict[str, Any]],
              validation: dict[str, Any], started: float, *, dry_run: bool) -> dict[str, Any]:
        return {
            "dry_run": dry_run,
            "image": {"path": str(paths.source), "format": info.format, "virtual_size": info.virtual_size},
            "fixed_image": None if dry_run or paths.output is None else str(paths.output),
            "in_place": bool(paths.output == paths.source),
            "backup": None if dry_run or paths.backup is None else str(paths.backup),
            "changes": changes,
            "summary": {s: sum(1 for c in changes if c["status"] == s)
                        for s in ("planned", "applied", "unchanged", "failed", "would_fail")},
            "validation": validation,
            "duration_seconds": round(time.monotonic() - started, 3),
        }

    def _write_log(self, paths: _Paths, data: dict[str, Any]) -> None:
        if paths.log is None:
            return
        with paths.files.stage(paths.log, overwrite=paths.overwrite) as staged:
            staged.write_bytes(json.dumps(data, indent=2, default=str).encode())
            staged.commit()
