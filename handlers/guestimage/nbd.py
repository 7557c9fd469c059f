"""A small NBD client (fixed newstyle handshake, NBD_OPT_GO, NBD_CMD_READ) and a qemu-nbd runner."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time

from .errors import unsupported
from .trust import inherited_fds

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REPLY_MAGIC_OPT = 0x3E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
FLAG_FIXED_NEWSTYLE = 1
FLAG_NO_ZEROES = 2
OPT_ABORT = 2
OPT_GO = 7
REP_ACK = 1
REP_INFO = 3
INFO_EXPORT = 0
CMD_READ = 0
CMD_DISC = 2
MAX_READ = 4 * 1024 * 1024


class NbdError(Exception):
    pass


class NbdClient:
    """A read-only NBD connection over a unix socket."""

    def __init__(self, socket_path: str, export: str = "", timeout: float = 60.0) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        self._sock.connect(socket_path)
        self._cookie = 0
        self.size = self._handshake(export)

    def _recv(self, length: int) -> bytes:
        buf = bytearray()
        while len(buf) < length:
            chunk = self._sock.recv(min(length - len(buf), 1 << 20))
            if not chunk:
                raise NbdError("NBD server closed the connection")
            buf += chunk
        return bytes(buf)

    def _handshake(self, export: str) -> int:
        magic, opt_magic, flags = struct.unpack(">QQH", self._recv(18))
        if magic != NBDMAGIC or opt_magic != IHAVEOPT:
            raise NbdError("not a newstyle NBD server")
        if not flags & FLAG_FIXED_NEWSTYLE:
            raise NbdError("NBD server does not support fixed newstyle")
        client_flags = FLAG_FIXED_NEWSTYLE | (flags & FLAG_NO_ZEROES)
        self._sock.sendall(struct.pack(">I", client_flags))
        name = export.encode()
        data = struct.pack(">I", len(name)) + name + struct.pack(">H", 0)
        self._sock.sendall(struct.pack(">QII", IHAVEOPT, OPT_GO, len(data)) + data)
        size: int | None = None
        while True:
            magic, _option, reply, length = struct.unpack(">QIII", self._recv(20))
            if magic != REPLY_MAGIC_OPT:
                raise NbdError("bad NBD option reply magic")
            if length > 1 << 20:
                raise NbdError("oversized NBD option reply")
            payload = self._recv(length)
            if reply & 0x80000000:
                raise NbdError(f"NBD server refused the export: {payload[4:].decode(errors='replace')}")
            if reply == REP_INFO and len(payload) >= 12:
                (info_type,) = struct.unpack(">H", payload[:2])
                if info_type == INFO_EXPORT:
                    size, _tflags = struct.unpack(">QH", payload[2:12])
            elif reply == REP_ACK:
                break
        if size is None:
            raise NbdError("NBD server sent no export size")
        return size

    def read(self, offset: int, length: int) -> bytes:
        if offset >= self.size or length <= 0:
            return b""
        length = min(length, self.size - offset)
        out = bytearray()
        while length > 0:
            part = min(length, MAX_READ)
            self._cookie += 1
            self._sock.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_READ, self._cookie, offset, part))
            magic, error, cookie = struct.unpack(">IIQ", self._recv(16))
            if magic != SIMPLE_REPLY_MAGIC or cookie != self._cookie:
                raise NbdError("bad NBD reply")
            if error:
                raise NbdError(f"NBD read error {error} at offset {offset}")
            out += self._recv(part)
            offset += part
            length -= part
        return bytes(out)

    def close(self) -> None:
        try:
            self._sock.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_DISC, 0, 0, 0))
        except OSError:
            pass
        self._sock.close()


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the parent dies (Linux), so no qemu-nbd outlives a killed worker."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class NbdDevice:
    """A disk image served read-only by a private qemu-nbd process; reads errors as UNSUPPORTED_IMAGE.

    ``image`` is a path or the pinned ``json:`` name of ``trust.PinnedImage`` (its driver names the format)."""

    def __init__(self, image: str, fmt: str, start_timeout: float = 15.0) -> None:
        if shutil.which("qemu-nbd") is None:
            raise unsupported("qemu-nbd is not installed; non-raw images cannot be read", format=fmt)
        self._dir = tempfile.mkdtemp(prefix="guestkit-nbd-")
        sock = os.path.join(self._dir, "nbd.sock")
        self._stderr = open(os.path.join(self._dir, "stderr"), "w+b")
        # not --persistent: qemu-nbd exits when our one connection closes, even if we are killed
        command = ["qemu-nbd", "--read-only", "--shared=1", f"--socket={sock}",
                   *([] if image.startswith("json:") else ["-f", fmt]), image]
        self._proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=self._stderr, preexec_fn=_die_with_parent,
                                      pass_fds=inherited_fds(command))
        self._client: NbdClient | None = None
        deadline = time.monotonic() + start_timeout
        try:
            while True:
                if self._proc.poll() is not None:
                    raise unsupported(f"qemu-nbd could not open the image as {fmt}: {self._err()}",
                                      format=fmt)
                if os.path.exists(sock):
                    try:
                        self._client = NbdClient(sock)
                        break
                    except (ConnectionRefusedError, FileNotFoundError):
                        pass
                    except (NbdError, OSError) as exc:
                        raise unsupported(f"NBD handshake failed: {exc} {self._err()}", format=fmt) from exc
                if time.monotonic() > deadline:
                    raise unsupported("qemu-nbd did not start in time", format=fmt)
                time.sleep(0.005)
        except BaseException:
            self.close()
            raise
        self.size = self._client.size
        self.format = fmt

    def _err(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read(4000).decode(errors="replace").strip()

    def read(self, offset: int, length: int) -> bytes:
        assert self._client is not None
        try:
            return self._client.read(offset, length)
        except (NbdError, OSError) as exc:
            raise unsupported(f"the image could not be read at offset {offset}: {exc}",
                              format=self.format, offset=offset, qemu_nbd=self._err()[:500]) from exc

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._stderr.close()
        shutil.rmtree(self._dir, ignore_errors=True)


