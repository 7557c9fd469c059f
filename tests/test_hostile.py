"""Hostile input: fuzzing the validator and the file-drop bridge, path traversal everywhere a path or a
name enters, oversized / deep / huge documents, and hostile disk images through a real worker."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.intake import api
from app.plugin.errors import ErrorCode, JobError, ValidationFailed
from app.plugin.paths import resolve_allowed
from app.protocol.models import MAX_DOCUMENT_BYTES, MAX_NESTING_DEPTH
from app.protocol.validation import validate
from tests.conftest import SESSION_DIR, WorkerProcess, make_job, new_job_id

# --- fuzzing the validator ------------------------------------------------------------------
HOSTILE_TEXT = st.sampled_from([
    "../../etc/passwd", "/etc/shadow", "..", ".", "a/../../b", "x\x00y", "line\nbreak", "cr\rlf", "\u202e",
    "%2e%2e%2f", "\\..\\..\\windows", "~root", "$(id)", "`id`", "'; DROP TABLE jobs; --", "\ud800", "A" * 5000,
    "job-" + "9" * 200, "🙂" * 50, "", " ", "\t",
])
LEAF = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True, allow_infinity=True)
        | st.text(max_size=30) | HOSTILE_TEXT)
#: keys never hold lone surrogates here: that case has its own test below
KEY = st.text(st.characters(exclude_categories=["Cs"]), max_size=10) | HOSTILE_TEXT.filter(lambda t: t != "\ud800")
VALUE = st.recursive(LEAF, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEY, inner, max_size=4),
                     max_leaves=12)

#: where a mutation may land: every envelope field, the payload of each real operation, and nonsense
FIELD_PATHS = [
    ("version",), ("job_id",), ("created_at",), ("kind",), ("operation",), ("payload",), ("payload", "type"),
    ("payload", "data"), ("payload", "data", "image"), ("payload", "data", "image", "path"),
    ("payload", "data", "image", "format"), ("payload", "data", "image", "checksum"),
    ("payload", "data", "output"), ("payload", "data", "output", "destination"), ("payload", "data", "options"),
    ("execution",), ("execution", "priority"), ("execution", "max_attempts"), ("execution", "attempt"),
    ("execution", "timeout_seconds"), ("execution", "deadline"), ("execution", "idempotency_key"),
    ("execution", "cancellable"), ("metadata",), ("metadata", "labels"), ("metadata", "labels", "k"),
    ("constraints",), ("constraints", "required_capabilities"), ("constraints", "minimum_worker_version"),
    ("constraints", "maximum_disk_size_gb"), ("routing",), ("routing", "worker_pool"), ("observability",),
    ("audit",), ("audit", "authorization"), ("x-unknown",),
]
OPERATIONS = ["system.echo", "guestkit.inspect", "guestkit.profile", "guestkit.convert", "guestkit.fix",
              "guestkit.compare", "test.sleep", "nope.nothing"]
#: a rejection names its field: ``path: message``, or ``(document)`` / ``(file)`` for the whole
QUOTED_KEY = re.compile(r'"(?:[^"\\]|\\.)*"')
PROBLEM = re.compile(r"^(\(document\)|\(file\)|[^\s:][^:\n]*): \S")


def _payload_models() -> dict:
    from app.celery import app
    from app.plugin.registry import installed

    return installed(app.conf.guestkit_extra_handlers).payload_models


def _base(operation: str) -> dict[str, Any]:
    data: dict[str, Any] = {"message": "hi"}
    if operation.startswith("guestkit."):
        data = {"image": {"path": str(SESSION_DIR / "disk.img")}}
    return make_job(operation, data)


def _set(doc: dict[str, Any], path: tuple[str, ...], value: Any, delete: bool) -> None:
    node: Any = doc
    for part in path[:-1]:
        if not isinstance(node, dict):
            return
        node = node.setdefault(part, {})
    if isinstance(node, dict):
        if delete:
            node.pop(path[-1], None)
        else:
            node[path[-1]] = value


@st.composite
def mutated_documents(draw: st.DrawFn) -> dict[str, Any]:
    doc = _base(draw(st.sampled_from(OPERATIONS)))
    for _ in range(draw(st.integers(1, 4))):
        _set(doc, draw(st.sampled_from(FIELD_PATHS)), draw(VALUE), draw(st.booleans()))
    return doc


def _check_outcome(source: Any) -> str:
    """validate() either accepts or raises ValidationFailed naming every field; nothing else."""
    try:
        validate(source, payload_models=_payload_models())
    except ValidationFailed as exc:
        assert exc.problems, "a rejection without a problem"
        for problem in exc.problems:
            # odd keys are JSON-quoted in the path (a key may hold ":" or "."): read each as one word
            assert PROBLEM.match(QUOTED_KEY.sub("key", problem)), f"problem does not name its field: {problem!r}"
        assert exc.code in (ErrorCode.VALIDATION_ERROR, ErrorCode.UNSUPPORTED_VERSION,
                            ErrorCode.UNSUPPORTED_OPERATION)
        return "rejected"
    return "accepted"


@pytest.mark.slow
@settings(max_examples=6000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(mutated_documents())
def test_fuzz_mutated_documents_never_crash_and_name_their_fields(doc: dict[str, Any]) -> None:
    _check_outcome(doc)
    try:
        text = json.dumps(doc, allow_nan=True)
    except (ValueError, UnicodeEncodeError):
        return
    _check_outcome(text.encode("utf-8", errors="surrogatepass"))


@settings(max_examples=4000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", errors="surrogatepass")),
    st.lists(st.sampled_from([b"{", b"}", b"[", b"]", b'"', b":", b",", b"\\", b"1", b"null", b'"job_id"',
                              b"\x00", b"\xff", b"\n"]), max_size=200).map(b"".join),
    VALUE.map(lambda v: json.dumps(v, allow_nan=True).encode("utf-8", errors="surrogatepass")),
))
@pytest.mark.slow
def test_fuzz_raw_bytes_never_crash(raw: bytes) -> None:
    _check_outcome(raw)


def test_lone_surrogate_in_a_key_is_rejected_naming_its_field() -> None:
    _check_outcome(b'{"\\ud800": null}')


# --- fuzzing the file-drop bridge -------------------------------------------------------------
BRIDGE_POOL = f"nobody-{uuid.uuid4().hex[:8]}"  # valid fuzzed jobs queue here and never run


def _bridge(jobs_dir: Path):
    import app.celery  # noqa: F401 - makes the guestkit app the current one, which the bridge submits through
    from app.intake.bridge import Bridge, BridgeConfig

    return Bridge(BridgeConfig(jobs_dir=jobs_dir, settle=0.0, budget=5.0))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(st.lists(st.one_of(mutated_documents().map(lambda d: ("doc", d)), st.binary(max_size=200).map(
    lambda b: ("raw", b))), min_size=1, max_size=20))
def test_fuzz_bridge_every_file_is_accounted_for(tmp_path_factory: pytest.TempPathFactory,
                                                 batch: list[tuple[str, Any]]) -> None:
    """Batches of fuzzed files (1,200 in all): every file leaves the drop directory, a rejected one
    lands in failed/ with a reason naming its fields; nothing crashes the bridge."""
    jobs = tmp_path_factory.mktemp("fuzzdrop")
    with _bridge(jobs) as bridge:  # closes the folders it holds open
        names = []
        for i, (kind, item) in enumerate(batch):
            if kind == "doc":
                item = dict(item, job_id=new_job_id("fuzz"), routing={"worker_pool": BRIDGE_POOL})
                try:
                    raw = json.dumps(item, allow_nan=True).encode("utf-8", errors="surrogatepass")
                except (ValueError, UnicodeEncodeError):
                    continue
            else:
                raw = item
            name = f"f{i}-{uuid.uuid4().hex[:6]}.json"
            (jobs / f".{name}").write_bytes(raw)
            os.rename(jobs / f".{name}", jobs / name)
            names.append(name)
        deadline = time.monotonic() + 20
        while any((jobs / n).exists() for n in names) or bridge.waiting:
            bridge.tick()
            assert time.monotonic() < deadline, ("the bridge did not take every file",
                                                 [_whereabouts(jobs, bridge, n) for n in names if (jobs / n).exists()])
        for name in names:
            failed = jobs / "failed" / name
            if failed.exists():
                reason = (jobs / "failed" / f"{name}.reason.txt").read_text()
                assert reason.startswith(f"file: {name}\nerror: "), reason
                listed = [line.strip() for line in reason.splitlines()[2:] if line.startswith("  ")]
                assert all(PROBLEM.match(QUOTED_KEY.sub("key", p)) for p in listed), reason
            else:  # accepted: its job was queued (in a pool nobody serves)
                claimed = {c.name.rsplit("@", 1)[-1] for c in (jobs / ".processing").iterdir()}
                assert name in claimed, _whereabouts(jobs, bridge, name)


def _whereabouts(jobs: Path, bridge: Any, name: str) -> dict[str, Any]:  # noqa: ANN401 - a Bridge
    """Where a dropped file is, and what the bridge holds of it: for a file not accounted for."""
    claims = [c for c in [*bridge.waiting.values(), *bridge.inflight] if c.name == name]
    found: dict[str, Any] = {
        "file": name,
        "folders": {folder or "jobs": sorted(e.name for e in os.scandir(jobs / folder) if e.name.endswith(name))
                    for folder in ("", ".processing", "done", "failed")},
        "bridge": [{"token": c.token, "waiting": c.token in bridge.waiting, "job_id": c.job_id,
                    "unpublished": c.unpublished, "recovered": c.recovered} for c in claims],
    }
    job_ids = [c.job_id for c in claims if c.job_id]
    if job_ids:
        status = bridge.store.get(job_ids[0])
        found["store"] = None if status is None else [f"{h.state.value} {h.reason or ''}" for h in status.history]
    return found


# --- path traversal ---------------------------------------------------------------------------
#: ``$`` also matches before a final newline: the patterns are applied with ``re.fullmatch``
BAD_JOB_IDS = ["../../../tmp/evil", "/etc/passwd", "a/b/c/d/e/f", "..........", ".hidden-job",
               "job\x00idxxxx", "jobid\nxxxx", pytest.param("abcdefgh\n", id="trailing-newline"),
               "abcdefgh\r", "job id with spaces", "x" * 129, "short", "jöb-ümlaut-1", "job%2F..%2Fx"]


@pytest.mark.parametrize("job_id", BAD_JOB_IDS)
def test_hostile_job_ids_are_refused_naming_job_id(job_id: str) -> None:
    doc = make_job()
    doc["job_id"] = job_id
    with pytest.raises(ValidationFailed) as caught:
        validate(doc)
    assert any(p.startswith("job_id: ") for p in caught.value.problems), caught.value.problems
    with pytest.raises(ValidationFailed):
        api.submit(doc)
    assert not list(Path(os.environ["GUESTKIT_RESULTS_DIR"]).glob("*evil*"))


@pytest.fixture
def allowed(tmp_path: Path) -> Path:
    base = SESSION_DIR / "hostile" / tmp_path.name
    base.mkdir(parents=True)
    return base


def test_payload_paths_outside_allowed_dirs_are_refused(allowed: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret.img"  # tmp_path is not under the allowed SESSION_DIR
    outside.write_bytes(b"\0" * 4096)
    (allowed / "link-out").symlink_to(outside)
    (allowed / "dir-link").symlink_to(tmp_path, target_is_directory=True)
    roots = [SESSION_DIR]
    for path in [str(outside), f"{allowed}/../../../../etc/passwd", "/etc/passwd", str(allowed / "link-out"),
                 str(allowed / "dir-link" / "secret.img"), "../../../../../../etc/shadow"]:
        with pytest.raises(JobError) as caught:
            resolve_allowed(path, roots)
        assert caught.value.code is ErrorCode.PATH_NOT_ALLOWED, path
    for path in [str(allowed / "a\x00b"), str(allowed / "a\nb"), ""]:
        with pytest.raises(JobError) as caught:
            resolve_allowed(path, roots)
        assert caught.value.code is ErrorCode.PATH_NOT_ALLOWED, repr(path)
    inside = allowed / "ok.img"
    inside.write_bytes(b"\0")
    assert resolve_allowed(str(allowed / "x" / ".." / "ok.img"), roots, must_exist=False) == inside


PAYLOAD_PATHS = ["/etc/passwd", "../../../../etc/passwd", "{outside}", "{link}",
                 "{allowed}/../../../../../../../etc/hostname"]


@pytest.mark.timeout(120)
def test_payload_path_traversal_fails_path_not_allowed_through_a_worker(shared_worker: WorkerProcess,
                                                                        allowed: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.img"
    outside.write_bytes(b"\0" * 4096)
    (allowed / "link.img").symlink_to(outside)
    cases = []
    for template in PAYLOAD_PATHS:
        path = template.format(outside=outside, link=allowed / "link.img", allowed=allowed)
        cases.append(("guestkit.inspect", {"image": {"path": path}}))
        cases.append(("guestkit.convert", {"source": {"path": str(allowed / "link.img")},
                                           "target": {"path": path, "format": "qcow2"}}))
    # an output destination pointing out of the allowed directories
    cases.append(("guestkit.inspect", {"image": {"path": str(allowed / "link.img")},
                                       "output": {"destination": str(tmp_path / "report.json")}}))
    handles = [(op, data, api.submit(make_job(op, data))) for op, data in cases]
    for op, data, handle in handles:
        result = handle.result(timeout=60)
        assert result["status"] == "failed", (op, data, result)
        assert result["error"]["code"] in ("PATH_NOT_ALLOWED", "VALIDATION_ERROR"), (op, data, result["error"])
    assert not (tmp_path / "report.json").exists()
    assert outside.read_bytes() == b"\0" * 4096


@pytest.mark.timeout(60)
def test_hostile_file_names_and_file_types_in_the_drop_directory(tmp_path: Path) -> None:
    """Symlinks (to a secret outside), FIFOs, directories, names with newlines or odd bytes: each is
    moved to failed/ with a reason (or ignored, for hidden names), none is followed or blocks the bridge."""
    jobs = tmp_path / "drop"
    jobs.mkdir()
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps(make_job()))  # a valid job: following the link would submit it
    (jobs / "link.json").symlink_to(secret)
    os.mkfifo(jobs / "fifo.json")
    (jobs / "dir.json").mkdir()
    good = make_job(data={"n": 1})
    good["routing"] = {"worker_pool": BRIDGE_POOL}
    odd_names = ["new\nline.json", "tab\tname.json", "quote'\"name.json", "-rf.json", "x\u202egnp.json"]
    for name in odd_names:
        (jobs / name).write_text("{not json")
    (jobs / "..json").write_text("{}")  # starts with a dot: hidden, the writer's
    (jobs / "good.json").write_text(json.dumps(good))
    (jobs / ".hidden.json").write_text("{}")
    with _bridge(jobs) as bridge:  # closes the folders it holds open
        started = time.monotonic()
        visible = ["link.json", "fifo.json", "dir.json", "good.json", *odd_names]
        while any(os.path.lexists(jobs / n) for n in visible) or bridge.waiting:
            bridge.tick()
            assert time.monotonic() - started < 20, sorted(os.listdir(jobs))
        for name in ["link.json", "fifo.json", "dir.json", *odd_names]:
            reason = (jobs / "failed" / f"{name}.reason.txt").read_text()
            assert "error: VALIDATION_ERROR" in reason, (name, reason)
        assert "symbolic link" in (jobs / "failed" / "link.json.reason.txt").read_text()
        assert json.loads(secret.read_text())["job_id"]  # untouched, and its job never submitted:
        assert api.status(json.loads(secret.read_text())["job_id"]) is None
        assert api.status(good["job_id"]) is not None
        assert (jobs / ".hidden.json").exists() and (jobs / "..json").exists()  # hidden names: left alone


@pytest.mark.timeout(60)
def test_file_name_that_is_not_utf8_goes_to_failed(tmp_path: Path) -> None:
    jobs = tmp_path / "drop"
    jobs.mkdir()
    name = b"\xff\xfe-bytes.json"
    with open(os.path.join(os.fsencode(jobs), name), "w") as handle:
        handle.write("{not json")
    with _bridge(jobs) as bridge:  # closes the folders it holds open
        started = time.monotonic()
        while time.monotonic() - started < 5 and not os.listdir(os.fsencode(jobs / "failed")):
            bridge.tick()
        assert os.listdir(os.fsencode(jobs / "failed")), "the file never reached failed/"
        assert not os.listdir(jobs / ".processing")


# --- oversized, deep, huge ---------------------------------------------------------------------
def _timed(fn: Any) -> tuple[float, int, Exception | None]:
    """CPU seconds ``fn`` took in this process (the work it did: what a quadratic parse would blow up,
    whatever else the machine runs meanwhile), its peak of traced memory, and what it raised."""
    tracemalloc.start()
    started = time.process_time()
    error = None
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - returned to the caller
        error = exc
    elapsed = time.process_time() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return elapsed, peak, error


@pytest.mark.parametrize("name, make", [
    ("2 MiB string field (bytes)", lambda: json.dumps(dict(make_job(), x="A" * (2 * MAX_DOCUMENT_BYTES))).encode()),
    ("64 MiB of spaces (bytes)", lambda: b"{" + b" " * (64 * 2**20) + b"}"),
    ("nesting 1,000,000 deep (text)", lambda: "[" * 1_000_000 + "]" * 1_000_000),
    ("nesting 100,000 deep inside a valid doc (bytes)",
     lambda: json.dumps(make_job())[:-1].encode() + b', "x": ' + b"{\"a\":" * 100_000 + b"1" + b"}" * 100_000 + b"}"),
    ("100,000 labels (dict)", lambda: dict(make_job(), metadata={"labels": {f"k{i}": i for i in range(100_000)}})),
])
def test_oversized_and_deep_documents_are_refused_quickly(name: str, make: Any) -> None:
    source = make()
    size = len(source) if isinstance(source, (bytes, str)) else 0
    elapsed, peak, error = _timed(lambda: validate(source))
    assert isinstance(error, ValidationFailed), (name, error)
    assert error.problems and all(PROBLEM.match(p) for p in error.problems[:50]), error.problems[:3]
    assert elapsed < 5, f"{name}: {elapsed:.2f} s"
    assert peak < max(32 * 2**20, size // 2), f"{name}: peak {peak / 2**20:.1f} MiB"
    assert len(str(error)) < 20_000, "the error message is bounded"


def test_deep_nesting_as_a_python_dict_is_refused_without_recursion_error() -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(200_000):
        node["a"] = {}
        node = node["a"]
    doc = dict(make_job(), x=deep)
    elapsed, _, error = _timed(lambda: validate(doc))
    assert isinstance(error, ValidationFailed) and f"deeper than {MAX_NESTING_DEPTH}" in str(error)
    assert elapsed < 5


def test_huge_file_on_disk_is_read_only_up_to_the_limit(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    with open(big, "wb") as handle:
        handle.truncate(8 * 2**30)  # 8 GiB, sparse
    elapsed, peak, error = _timed(lambda: validate(big))
    assert isinstance(error, ValidationFailed)
    assert elapsed < 2 and peak < 8 * MAX_DOCUMENT_BYTES, (elapsed, peak)


def test_many_problems_are_all_listed_but_the_message_is_bounded() -> None:
    doc = make_job()
    doc["constraints"] = {"required_capabilities": [1] * 5000}
    with pytest.raises(ValidationFailed) as caught:
        validate(doc)
    assert len(caught.value.problems) == 5000
    assert all(p.startswith("constraints.required_capabilities.") for p in caught.value.problems)
    assert len(str(caught.value)) < 5000


# --- hostile disk images through a real worker ---------------------------------------------------
@pytest.fixture(scope="module")
def hostile_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tests import test_guestimage_unsupported as u
    from tests.imagebuild import MiB, _lvm_metadata, _write_pv, build_image, sample_root

    base = SESSION_DIR / f"hostile-images-{uuid.uuid4().hex[:6]}"
    base.mkdir(parents=True)
    images: dict[str, Path] = {}
    for name, make in [("past-end", u._past_end), ("ebr-loop", u._ebr_loop), ("gpt-crc", u._gpt_corrupt),
                       ("random", u._random), ("empty", u._empty)]:
        images[name] = base / f"{name}.img"
        make(images[name])
    # LVM metadata whose volume maps onto itself (a loop), and one whose segment runs past its PV
    pv_size = MiB + 4 * 4 * MiB
    loop = base / "lvm-loop.img"
    u._mbr_disk(loop, size=pv_size + 2 * MiB, part_size=pv_size, ptype="8e")
    text = _lvm_metadata("vg0", "B" * 32, "A" * 32, pv_size, 4, [("a", "C" * 32, [(0, 1, 0)])])
    _write_pv(loop, MiB, pv_size, "A" * 32, text.replace('"pv0", 0', '"a", 0'))
    images["lvm-loop"] = loop
    images["lvm-past-pv"] = base / "lvm-past.img"
    u._lvm_disk(images["lvm-past-pv"], [("root", "C" * 32, [(0, 2, 3)])])
    root = base / "root"
    root.mkdir()
    sample_root(root)
    good = base / "good.qcow2"
    build_image(root, good, "plain", "qcow2")
    data = good.read_bytes()
    for keep in (0.5, 0.05):
        images[f"truncated-qcow2-{keep}"] = base / f"truncated-{keep}.qcow2"
        images[f"truncated-qcow2-{keep}"].write_bytes(data[: int(len(data) * keep)])
    garbage = bytearray(data[:65536])
    garbage[20:28] = (2**62).to_bytes(8, "big")  # qcow2 size field: 4 EiB
    images["qcow2-huge-size-header"] = base / "huge.qcow2"
    images["qcow2-huge-size-header"].write_bytes(bytes(garbage))
    yield images
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.timeout(240)
def test_hostile_images_fail_cleanly_within_their_timeout(shared_worker: WorkerProcess,
                                                          hostile_images: dict[str, Path]) -> None:
    timeout = 30
    handles = {}
    started = time.monotonic()
    for name, image in hostile_images.items():
        for operation in ("guestkit.inspect", "guestkit.profile"):
            doc = make_job(operation, {"image": {"path": str(image)}}, timeout_seconds=timeout)
            handles[(name, operation)] = api.submit(doc)
    for (name, operation), handle in handles.items():
        result = handle.result(timeout=timeout * 3)
        assert result["status"] == "failed", (name, operation, result.get("status"), result.get("error"))
        assert result["error"]["code"] in ("UNSUPPORTED_IMAGE", "IMAGE_NOT_FOUND"), (name, operation, result["error"])
        assert result["error"]["message"], name
        assert result["execution_summary"]["duration_seconds"] < timeout, (name, operation)
    assert time.monotonic() - started < timeout * 3
    assert shared_worker.proc is not None and shared_worker.proc.poll() is None
    # no qemu-nbd or other helper left behind by the failed jobs
    leftovers = [p for p in shared_worker.children() if _name(p) not in ("celery", "python", "python3")]
    assert not leftovers, [_name(p) for p in leftovers]


def _name(pid: int) -> str:
    import psutil

    try:
        return psutil.Process(pid).name()
    except psutil.NoSuchProcess:
        return "gone"


def test_version_with_a_trailing_newline_is_refused() -> None:
    doc = make_job()
    doc["version"] = "1.0\n"
    with pytest.raises(ValidationFailed, match="version: "):
        validate(doc)
