"""The image gate against an attacker who may place files in an allowed directory and submit jobs.

Outside every allowed directory lies a host secret (raw disk data full of a marker) and a canary
file; on loopback, a listener that an image's backing name points at. The corpus the tests build
names the secret (or the listener) every way qemu would follow: backing chains of two and three
levels (through an allowed middle), relative ``../`` names, a symlinked member, ``json:`` names
with a nested ``file.filename``, protocol prefixes, a vmdk extent, a qcow2 data file, and a raw
image the job calls qcow2. Each image goes through every operation on a real worker: each job
fails ``IMAGE_NOT_ALLOWED`` naming the image, the marker appears in no result, output, worker log
or job store record, the canary keeps its hash, and the listener never sees a connection.
The suite runs once per broker (``--broker``)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from app.intake import api
from tests.conftest import SESSION_DIR, WorkerPool, WorkerProcess, make_job, routed
from tests.imagebuild import sample_guest

pytestmark = [pytest.mark.broker, pytest.mark.timeout(300)]

MARKER = b"HOST-SECRET-" + uuid.uuid4().hex.encode()
MiB = 1024 * 1024
OPERATIONS = ("guestkit.inspect", "guestkit.profile", "guestkit.compare", "guestkit.convert", "guestkit.fix")


@dataclass
class Host:
    """What lies outside the allowed directories."""

    secret: Path
    canary: Path
    canary_hash: str
    listener: socket.socket

    @property
    def port(self) -> int:
        return self.listener.getsockname()[1]

    def connections(self) -> int:
        count = 0
        while True:
            try:
                conn, _ = self.listener.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    base = tmp_path_factory.mktemp("host")
    assert SESSION_DIR not in base.parents
    secret = base / "secret.raw"
    line = MARKER + b"\n"
    secret.write_bytes(line * (MiB // len(line)) + b"\0" * (MiB % len(line)))
    canary = base / "canary"
    canary.write_bytes(b"do not touch\n")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.setblocking(False)
    yield Host(secret, canary, hashlib.sha256(canary.read_bytes()).hexdigest(), listener)
    listener.close()


def _qcow2(path: Path, backing: str, backing_format: str = "raw", size: int = MiB) -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", backing, "-F", backing_format,
                    str(path), str(size)], check=True, capture_output=True)
    return path


def _vmdk_naming(path: Path, extent: str) -> Path:
    path.write_text('# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n'
                    f'createType="monolithicFlat"\nRW 2048 FLAT "{extent}" 0\n')
    return path


@dataclass
class Attack:
    image: Path
    #: the format the job names, if it names one
    format: str | None = None


@pytest.fixture(scope="module")
def corpus(host: Host) -> Iterator[dict[str, Attack]]:
    """The attack images, in an allowed directory of their own."""
    allowed = SESSION_DIR / f"trust-{uuid.uuid4().hex[:8]}"
    allowed.mkdir()
    secret = str(host.secret)
    mid = _qcow2(allowed / "mid.qcow2", secret)
    (allowed / "link.raw").symlink_to(host.secret)
    nested = {"driver": "raw", "file": {"driver": "file", "filename": secret}}
    nbd_json = {"driver": "raw", "file": {"driver": "nbd", "server": {"type": "inet", "host": "127.0.0.1",
                                                                      "port": str(host.port)}}}
    data_file = allowed / "data-file.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", f"data_file={allowed / 'own.raw'}",
                    str(data_file), "1M"], check=True, capture_output=True)
    subprocess.run(["qemu-img", "amend", "-f", "qcow2", "-o", f"data_file={secret}", str(data_file)],
                   check=True, capture_output=True)
    plain = allowed / "plain.raw"
    plain.write_bytes(b"\0" * MiB)
    relative = os.path.relpath(secret, allowed)
    assert relative.startswith("../")
    attacks = {
        "two levels: backing file outside": Attack(_qcow2(allowed / "two.qcow2", secret)),
        "three levels through an allowed middle": Attack(_qcow2(allowed / "three.qcow2", str(mid), "qcow2")),
        "relative ../ backing name": Attack(_qcow2(allowed / "relative.qcow2", relative)),
        "backing file symlinked out": Attack(_qcow2(allowed / "symlinked.qcow2", "link.raw")),
        "json: with nested file.filename": Attack(_qcow2(allowed / "json.qcow2", "json:" + json.dumps(nested))),
        "json: naming an NBD server": Attack(_qcow2(allowed / "json-nbd.qcow2", "json:" + json.dumps(nbd_json))),
        "vmdk extent naming the secret": Attack(_vmdk_naming(allowed / "extent.vmdk", secret)),
        "vmdk extent naming /etc/passwd": Attack(_vmdk_naming(allowed / "passwd.vmdk", "/etc/passwd")),
        "qcow2 data file outside": Attack(data_file),
        "raw image the job calls qcow2": Attack(plain, "qcow2"),
    }
    for prefix in (f"nbd:127.0.0.1:{host.port}", f"nbd://127.0.0.1:{host.port}/disk", f"file:{secret}",
                   f"blkdebug::{secret}", f"http://127.0.0.1:{host.port}/disk.raw",
                   f"https://127.0.0.1:{host.port}/disk.raw", f"ssh://127.0.0.1:{host.port}/disk.raw",
                   f"ftp://127.0.0.1:{host.port}/disk.raw"):
        name = f"protocol {prefix.split(':')[0]}: ({prefix[:14]}...)"
        attacks[name] = Attack(_qcow2(allowed / f"proto-{len(attacks)}.qcow2", prefix))
    yield attacks
    shutil.rmtree(allowed, ignore_errors=True)


def _payload(operation: str, attack: Attack, out: Path) -> dict[str, Any]:
    image: dict[str, Any] = {"path": str(attack.image)}
    if attack.format:
        image["format"] = attack.format
    return {
        "guestkit.inspect": {"image": image, "output": {"destination": str(out / "report.json")}},
        "guestkit.profile": {"image": image, "output": {"destination": str(out / "profile.json")}},
        "guestkit.compare": {"baseline": image, "target": image},
        "guestkit.convert": {"source": image, "target": {"path": str(out / "converted.raw"), "format": "raw"}},
        "guestkit.fix": {"image": image, "operations": [{"type": "fsck"}],
                         "output": {"fixed_image": str(out / "fixed.qcow2"), "log_path": str(out / "fix.json")}},
    }[operation]


def _worker(pool: WorkerPool, name: str, **env: str) -> WorkerProcess:
    return pool(name=name, concurrency=2, env=env)


@pytest.fixture(scope="module")
def gate_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, WorkerPool]]:
    """Two workers: one with the default gate (no backing file at all), one allowing chains of
    three backing files inside the allowed directories."""
    workers = WorkerPool(tmp_path_factory.mktemp("trust-workers"))
    strict, chains = f"trust-strict-{uuid.uuid4().hex[:6]}", f"trust-chains-{uuid.uuid4().hex[:6]}"
    _worker(workers, f"strict-{uuid.uuid4().hex[:4]}", GUESTKIT_POOLS=strict)
    _worker(workers, f"chains-{uuid.uuid4().hex[:4]}", GUESTKIT_POOLS=chains, GUESTKIT_MAX_CHAIN_DEPTH="3")
    yield strict, chains, workers
    workers.kill_all()


def _store_records(request: pytest.FixtureRequest) -> list[bytes]:
    """Everything the job store holds for this session: files of the file store, values in Redis."""
    store_url = os.environ["GUESTKIT_STORE_URL"]
    if store_url.startswith("file://"):
        root = Path(store_url.removeprefix("file://"))
        return [p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
    import redis

    client = redis.Redis.from_url(store_url.split("?")[0])
    prefix = store_url.split("prefix=")[1]
    records: list[bytes] = []
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        kind = client.type(key)
        if kind == b"string":
            records.append(client.get(key) or b"")
        elif kind == b"hash":
            records.extend(b"%s=%s" % item for item in client.hgetall(key).items())
        elif kind == b"list":
            records.extend(client.lrange(key, 0, -1))
        elif kind == b"zset":
            records.extend(client.zrange(key, 0, -1))
        elif kind == b"set":
            records.extend(client.smembers(key))
    return records


def _assert_nothing_leaked(host: Host, request: pytest.FixtureRequest, results: list[dict[str, Any]],
                           workers: WorkerPool, *folders: Path) -> None:
    assert MARKER not in json.dumps(results).encode()
    places = [SESSION_DIR / "results", *folders]
    for folder in places:
        for path in folder.rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert MARKER not in path.read_bytes(), f"the host secret leaked into {path}"
    for worker in workers.started:
        assert MARKER not in worker.log.read_bytes(), f"the host secret leaked into {worker.log}"
    records = _store_records(request)
    assert len(records) >= len(results), "the job store holds less than these jobs: nothing would be checked"
    assert not [r for r in records if MARKER in r], "the host secret leaked into the job store"
    assert hashlib.sha256(host.canary.read_bytes()).hexdigest() == host.canary_hash
    assert host.connections() == 0, "a job made the worker (or qemu) connect to the listener an image names"


@pytest.mark.parametrize("pool_kind", ["strict", "chains allowed"])
def test_every_operation_refuses_every_attack_image(host: Host, corpus: dict[str, Attack],
                                                    gate_pool: tuple[str, str, WorkerPool], pool_kind: str,
                                                    request: pytest.FixtureRequest) -> None:
    strict, chains, workers = gate_pool
    pool = strict if pool_kind == "strict" else chains
    out = SESSION_DIR / f"trust-out-{uuid.uuid4().hex[:8]}"
    submitted = []
    for name, attack in corpus.items():
        for operation in OPERATIONS:
            folder = out / f"{operation}-{len(submitted)}"
            folder.mkdir(parents=True)
            doc = routed(make_job(operation, _payload(operation, attack, folder)), pool)
            submitted.append((name, operation, attack, api.submit(doc)))
    results = []
    for name, operation, attack, handle in submitted:
        result = handle.result(timeout=120)
        results.append(result)
        error = result.get("error") or {}
        assert result["status"] == "failed" and error.get("code") == "IMAGE_NOT_ALLOWED", (name, operation, result)
        assert str(attack.image) in error["message"] or str(attack.image.resolve()) in error["message"], \
            (name, operation, error["message"])
    assert not [p for p in out.rglob("*") if p.is_file()], "a refused job wrote an output"
    allowed = corpus["two levels: backing file outside"].image.parent
    _assert_nothing_leaked(host, request, results, workers, out, allowed)


def test_refusals_say_why(corpus: dict[str, Attack], gate_pool: tuple[str, str, WorkerPool]) -> None:
    """The message names the member and the reason, on the worker that allows chains (so that the
    chain-depth limit is not what refuses them)."""
    _, chains, _ = gate_pool
    expected = {
        "three levels through an allowed middle": "outside the allowed directories",
        "backing file symlinked out": "outside the allowed directories",
        "relative ../ backing name": "outside the allowed directories",
        "json: with nested file.filename": "json: pseudo-filename",
        "vmdk extent naming /etc/passwd": "/etc/passwd",
        "qcow2 data file outside": "outside the allowed directories",
        "raw image the job calls qcow2": "is a raw image, not the qcow2 the job names",
        "protocol nbd: (nbd:127.0.0.1:...)": "protocol",
    }
    handles = {name: api.submit(routed(make_job("guestkit.inspect", _payload("guestkit.inspect", corpus[name],
                                                                                 SESSION_DIR)), chains))
               for name in expected}
    for name, handle in handles.items():
        error = handle.result(timeout=120)["error"]
        assert error["code"] == "IMAGE_NOT_ALLOWED" and expected[name] in error["message"], (name, error)


def test_the_default_gate_refuses_any_backing_file_and_names_the_setting(
        corpus: dict[str, Attack], gate_pool: tuple[str, str, WorkerPool]) -> None:
    strict, _, _ = gate_pool
    attack = corpus["three levels through an allowed middle"]
    error = api.submit(routed(make_job("guestkit.inspect", _payload("guestkit.inspect", attack, SESSION_DIR)),
                              strict)).result(timeout=120)["error"]
    assert error["code"] == "IMAGE_NOT_ALLOWED" and "GUESTKIT_MAX_CHAIN_DEPTH=0" in error["message"], error
    assert error["details"]["backing_file"].endswith("mid.qcow2")


@pytest.fixture(scope="module")
def honest_chain() -> Iterator[Path]:
    """A guest (raw) under a qcow2 overlay under a second one, all in one allowed directory."""
    base = sample_guest(SESSION_DIR / f"trust-honest-{uuid.uuid4().hex[:6]}", "guest.raw", "raw").parent
    size = (base / "guest.raw").stat().st_size
    _qcow2(base / "middle.qcow2", "guest.raw", size=size)
    yield _qcow2(base / "top.qcow2", "middle.qcow2", "qcow2", size=size)
    shutil.rmtree(base, ignore_errors=True)


def test_an_honest_chain_inside_the_allowed_directories_is_read_where_chains_are_allowed(
        honest_chain: Path, gate_pool: tuple[str, str, WorkerPool]) -> None:
    strict, chains, _ = gate_pool
    result = api.submit(routed(make_job("guestkit.inspect", {"image": {"path": str(honest_chain)}}),
                               chains)).result(timeout=120)
    assert result["status"] == "completed", result
    assert result["data"]["os"]["hostname"] == "testvm", result["data"]["os"]
    converted = honest_chain.parent / f"flat-{uuid.uuid4().hex[:6]}.raw"
    result = api.submit(routed(make_job("guestkit.convert", {
        "source": {"path": str(honest_chain)}, "target": {"path": str(converted), "format": "raw"}}),
        chains)).result(timeout=120)
    assert result["status"] == "completed" and result["data"]["verified"] is True, result
    assert converted.read_bytes() == (honest_chain.parent / "guest.raw").read_bytes()
    refused = api.submit(routed(make_job("guestkit.inspect", {"image": {"path": str(honest_chain)}}),
                                strict)).result(timeout=120)
    assert refused["error"]["code"] == "IMAGE_NOT_ALLOWED", refused
