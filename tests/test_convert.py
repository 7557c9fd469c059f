"""guestkit.convert between every pair of formats, content verified by reading the result back."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from app.plugin.errors import ErrorCode, JobError
from handlers.convert import ConvertHandler
from handlers.guestimage import open_guest
from handlers.payloads import ConvertPayloadV1
from tests.imagebuild import FORMATS, FakeContext, build_image, convert_raw, sample_root


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("convert")
    root = base / "root"
    root.mkdir()
    files = sample_root(root)
    raw = base / "src" / "disk.raw"
    raw.parent.mkdir()
    truth = build_image(root, raw, "gpt-boot-efi", "raw")
    paths = {}
    for fmt in FORMATS:
        paths[fmt] = base / "src" / f"disk-{fmt}.{fmt}"
        convert_raw(raw, paths[fmt], fmt)
    return {"base": base, "files": files, "truth": truth, "paths": paths}


def _run(base: Path, data: dict[str, Any], **ctx_args: Any) -> tuple[Any, FakeContext]:
    ctx = FakeContext([base], base / "work", **ctx_args)
    result = ConvertHandler().execute(ctx, ConvertPayloadV1.model_validate(data))
    return result, ctx


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("target_fmt", FORMATS)
@pytest.mark.parametrize("source_fmt", FORMATS)
def test_convert_pair(sources: dict[str, Any], tmp_path: Path, source_fmt: str, target_fmt: str) -> None:
    source = sources["paths"][source_fmt]
    before = _sha(source)
    target = sources["base"] / "out" / f"{source_fmt}-to-{target_fmt}.{target_fmt}"
    target.parent.mkdir(exist_ok=True)
    result, ctx = _run(sources["base"], {"source": {"path": str(source)},
                                         "target": {"path": str(target), "format": target_fmt}})
    assert result.primary == str(target)
    assert result.data["source"]["format"] == source_fmt
    assert result.data["target"]["format"] == target_fmt
    assert result.data["verified"] is True
    assert _sha(source) == before
    assert not list(target.parent.glob(".*partial*"))
    phases = [event[0] for event in ctx.events]
    assert phases[0] == "validation" and phases[-1] == "cleanup" and "result_generation" in phases
    percents = [event[1] for event in ctx.events]
    assert percents == sorted(percents) and percents[-1] == 100
    with open_guest(target) as guest:
        assert guest.image.format == target_fmt
        tree = guest.root_tree()
        for path, content in sources["files"].items():
            assert tree.read_bytes(path) == content
        assert guest.mountpoints == sources["truth"]["mountpoints"]


@pytest.mark.parametrize(("fmt", "compressed"), [("qcow2", True), ("vmdk", True), ("vdi", False)])
def test_compression(sources: dict[str, Any], fmt: str, compressed: bool) -> None:
    target = sources["base"] / "out" / f"compressed.{fmt}"
    target.parent.mkdir(exist_ok=True)
    result, _ctx = _run(sources["base"], {"source": {"path": str(sources["paths"]["raw"]), "format": "raw"},
                                          "target": {"path": str(target), "format": fmt, "compression": True}})
    assert result.data["target"]["compressed"] is compressed
    assert bool(result.data["notes"]) is not compressed
    with open_guest(target) as guest:
        assert guest.image.compressed is compressed
        assert guest.root_tree().read_bytes("/etc/hostname") == b"testvm\n"


def test_checksum_verified_and_mismatch(sources: dict[str, Any]) -> None:
    source = sources["paths"]["qcow2"]
    target = sources["base"] / "out" / "checked.raw"
    target.parent.mkdir(exist_ok=True)
    result, ctx = _run(sources["base"], {"source": {"path": str(source), "checksum": "sha256:" + _sha(source)},
                                         "target": {"path": str(target), "format": "raw"}})
    assert result.data["source"]["checksum_verified"] is True
    with pytest.raises(JobError) as caught:
        _run(sources["base"], {"source": {"path": str(source), "checksum": "sha256:" + "0" * 64},
                               "target": {"path": str(target) + "2", "format": "raw"}})
    assert caught.value.code == ErrorCode.IMAGE_CHECKSUM_MISMATCH


def test_refusals(sources: dict[str, Any], tmp_path: Path) -> None:
    source = sources["paths"]["raw"]
    cases = [
        ({"source": {"path": str(source)}, "target": {"path": str(tmp_path / "x.qcow2"), "format": "qcow2"}},
         ErrorCode.PATH_NOT_ALLOWED),
        ({"source": {"path": "/etc/passwd"}, "target": {"path": str(sources["base"] / "y.raw"), "format": "raw"}},
         ErrorCode.PATH_NOT_ALLOWED),
        ({"source": {"path": str(source)}, "target": {"path": str(sources["paths"]["vdi"]), "format": "vdi"}},
         ErrorCode.OUTPUT_EXISTS),
        ({"source": {"path": str(sources["base"] / "missing.raw")},
          "target": {"path": str(sources["base"] / "z.raw"), "format": "raw"}}, ErrorCode.IMAGE_NOT_FOUND),
    ]
    for data, code in cases:
        with pytest.raises(JobError) as caught:
            _run(sources["base"], data)
        assert caught.value.code == code, data


def test_size_limit(sources: dict[str, Any]) -> None:
    with pytest.raises(JobError) as caught:
        _run(sources["base"], {"source": {"path": str(sources["paths"]["raw"])},
                               "target": {"path": str(sources["base"] / "big.qcow2"), "format": "qcow2"}},
             max_disk_size_gb=0)
    assert caught.value.code == ErrorCode.UNSUPPORTED_IMAGE


def test_cancel_kills_conversion(sources: dict[str, Any]) -> None:
    target = sources["base"] / "out" / "cancelled.vhdx"
    target.parent.mkdir(exist_ok=True)
    with pytest.raises(JobError) as caught:
        _run(sources["base"], {"source": {"path": str(sources["paths"]["raw"])},
                               "target": {"path": str(target), "format": "vhdx"}}, cancel_after=3)
    assert caught.value.code == ErrorCode.CANCELLED
    assert not target.exists()
    assert not list(target.parent.glob(".cancelled*"))
