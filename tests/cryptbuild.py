"""Encrypted volumes for the tests: LUKS1 and LUKS2 made by ``cryptsetup luksFormat`` on a plain file
(no root, no device mapper: a file is formatted, never opened), their ground truth read back with
``cryptsetup luksDump`` (an independent reader), and disks holding them beside an ext4 partition."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from tests.imagebuild import MiB, _mkext4, _sfdisk, _uuid, _write_fstab, convert_raw, copy_into

PASSPHRASE = b"correct horse battery staple"
#: a fast key derivation: the tests format volumes, they do not protect anything
FAST_KDF = ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"]


def _cryptsetup(*args: str, stdin: bytes = b"") -> str:
    done = subprocess.run(["cryptsetup", *args], input=stdin, capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"cryptsetup {' '.join(args)}: {done.stderr.decode(errors='replace')}")
    return done.stdout.decode()


def luks_volume(path: Path, version: int, *, size: int = 20 * MiB, label: str | None = None,
                cipher: str = "aes-xts-plain64", key_bits: int = 512, extra_keys: int = 0,
                token: str | None = None) -> dict[str, Any]:
    """Format ``path`` (a plain file of ``size``) as LUKS``version``; return what ``luksDump`` says."""
    with open(path, "wb") as handle:
        handle.truncate(size)
    key = path.with_name(path.name + ".key")
    key.write_bytes(PASSPHRASE)
    args = ["luksFormat", "-q", "--type", f"luks{version}", *FAST_KDF, "--cipher", cipher, "--key-size",
            str(key_bits), "--key-file", str(key)]
    if label is not None:
        args += ["--label", label]
    _cryptsetup(*args, str(path))
    for n in range(extra_keys):
        other = path.with_name(f"{path.name}.key{n}")
        other.write_bytes(f"second key {n}".encode())
        _cryptsetup("luksAddKey", "-q", *FAST_KDF, "--key-file", str(key), str(path), str(other))
        other.unlink()
    key.unlink()
    if token is not None:
        spec = path.with_name(path.name + ".token.json")
        spec.write_text(json.dumps({"type": token, "keyslots": ["0"]}))
        _cryptsetup("token", "import", "--json-file", str(spec), str(path))
        spec.unlink()
    return luks_dump(path)


def luks_dump(path: Path) -> dict[str, Any]:
    """The facts the engine reports, as ``cryptsetup luksDump`` prints them."""
    text = _cryptsetup("luksDump", str(path))
    fields = {m.group(1).strip(): m.group(2).strip() for m in re.finditer(r"^([A-Za-z ]+):\s*(.*)$", text, re.M)}
    if fields["Version"] == "1":
        slots = [int(n) for n in re.findall(r"^Key Slot (\d+): ENABLED", text, re.M)]
        return {"scheme": "LUKS1", "version": 1, "uuid": fields["UUID"], "label": None,
                "cipher": f"{fields['Cipher name']}-{fields['Cipher mode']}", "key_bits": int(fields["MK bits"]),
                "keyslots": slots, "protectors": [], "data_offset": int(fields["Payload offset"]) * 512}
    keyslots = text.split("Keyslots:", 1)[1].split("Tokens:", 1)[0]
    tokens = text.split("Tokens:", 1)[1].split("Digests:", 1)[0]
    segment = text.split("Data segments:", 1)[1].split("Keyslots:", 1)[0]
    return {"scheme": "LUKS2", "version": 2, "uuid": fields["UUID"],
            "label": None if fields["Label"] == "(no label)" else fields["Label"],
            "cipher": re.search(r"cipher: (\S+)", segment).group(1),  # type: ignore[union-attr]
            "key_bits": int(re.search(r"Key:\s+(\d+) bits", keyslots).group(1)),  # type: ignore[union-attr]
            "keyslots": [int(n) for n in re.findall(r"^\s+(\d+): luks2", keyslots, re.M)],
            "protectors": re.findall(r"^\s+\d+: (\S+)", tokens, re.M),
            "data_offset": int(re.search(r"offset: (\d+) \[bytes\]", segment).group(1))}  # type: ignore[union-attr]


def disk_with(volume: Path, out: Path, tree: Path | None, fmt: str = "raw", *,
              fstab: list[str] | None = None) -> dict[str, Any]:
    """A disk (MBR): /dev/sda1 ext4 holding ``tree`` (a root, or /boot's contents), /dev/sda2 the encrypted
    ``volume``. Returns the devices' facts."""
    ext4_size, volume_size = 16 * MiB, volume.stat().st_size
    raw = out if fmt == "raw" else out.with_suffix(".raw")
    with open(raw, "wb") as handle:
        handle.truncate(MiB + ext4_size + volume_size + MiB)
    _sfdisk(raw, f"label: dos\nstart=2048, size={ext4_size // 512}, type=83\n"
                 f"start={(MiB + ext4_size) // 512}, size={volume_size // 512}, type=83\n")
    ext4_uuid = _uuid(f"{out.name}/ext4")
    if tree is not None:
        if fstab is not None:
            _write_fstab(tree, fstab)
        _mkext4(raw, MiB, ext4_size, tree, ext4_uuid, "boot")
    copy_into(raw, volume, [(0, volume_size, MiB + ext4_size)])
    if fmt != "raw":
        convert_raw(raw, out, fmt)
        raw.unlink()
    return {"ext4": "/dev/sda1", "ext4_uuid": ext4_uuid, "encrypted": "/dev/sda2"}
