"""The tests' hive writer (tests/hivebuild.py) against libregf, the reader the worker uses: what
the Windows test guests hold is what a Windows registry would."""

from __future__ import annotations

import io
from pathlib import Path

import pyregf

from tests.hivebuild import REG_EXPAND_SZ, REG_QWORD, Key, hive_bytes


def _open(data: bytes) -> pyregf.file:
    hive = pyregf.file()
    hive.open_file_object(io.BytesIO(data))
    return hive


def test_keys_values_and_names_in_any_script_read_back() -> None:
    root = Key("ROOT")
    current = root.key("Microsoft/Windows NT/CurrentVersion")
    current.set("ProductName", "Windows Server 2022 Standard").set("UBR", 2227).set("Big", 2**40, REG_QWORD)
    current.set("SystemRoot", "C:\\Windows", REG_EXPAND_SZ).set("Blob", b"\x00\x01\x02\x03\x04\x05")
    for n in range(300):  # more subkeys than one hive bin holds
        root.key(f"Uninstall/App{n:03d}").set("DisplayName", f"アプリ {n}")
    root.key("Ελληνικά/日本語").set("名前", "値")
    hive = _open(hive_bytes(root))
    key = hive.get_key_by_path("\\Microsoft\\Windows NT\\CurrentVersion")
    values = {v.name: v for v in key.values}
    assert values["ProductName"].data_as_string == "Windows Server 2022 Standard"
    assert (values["UBR"].data_as_integer, values["Big"].data_as_integer) == (2227, 2**40)
    assert values["SystemRoot"].type == REG_EXPAND_SZ and values["Blob"].data == b"\x00\x01\x02\x03\x04\x05"
    uninstall = hive.get_key_by_path("\\Uninstall")
    assert uninstall.number_of_sub_keys == 300
    assert uninstall.get_sub_key_by_name("app299").get_value_by_name("DisplayName").data_as_string == "アプリ 299"
    assert hive.get_key_by_path("\\Ελληνικά\\日本語").get_value_by_name("名前").data_as_string == "値"
    assert not hive.is_corrupted()


def test_a_dirty_hive_has_differing_sequence_numbers() -> None:
    clean, dirty = hive_bytes(Key("ROOT")), hive_bytes(Key("ROOT"), dirty=True)
    assert clean[4:8] == clean[8:12] and dirty[4:8] != dirty[8:12]
    assert _open(dirty).get_root_key().name == "ROOT"


def test_a_windows_image_is_built_unprivileged_and_read_back(tmp_path: Path) -> None:
    """The windows layout: an MBR disk, C: an NTFS holding the tree (directories made through
    libntfs-3g, files copied by ntfscp; no mount), D: an empty NTFS; the engine finds C: as the root."""
    from handlers.guestimage import open_guest
    from tests.hivebuild import write_hive
    from tests.imagebuild import WINDOWS_VOLUMES, build_image

    root = tmp_path / "root"
    (root / "Windows/System32/config").mkdir(parents=True)
    software = Key("ROOT")
    software.key("Microsoft/Windows NT/CurrentVersion").set("ProductName", "Windows Server 2022 Standard")
    write_hive(root / "Windows/System32/config/SOFTWARE", software)
    (root / "Users/Νίκος").mkdir(parents=True)
    built = build_image(root, tmp_path / "win.qcow2", "windows", "qcow2")
    assert [(p["start_bytes"], p["type_id"]) for p in built["partitions"]] == [
        (start, "0x07") for start, _, _ in WINDOWS_VOLUMES.values()]
    with open_guest(tmp_path / "win.qcow2") as guest:
        tree = guest.root_tree()
        assert guest.root_device == "/dev/sda1" and tree.listdir("/Users") == ["Νίκος"]
        hive = _open(tree.read_bytes("/Windows/System32/config/SOFTWARE") or b"")
        assert hive.get_key_by_path("\\Microsoft\\Windows NT\\CurrentVersion").get_value_by_name(
            "ProductName").data_as_string == "Windows Server 2022 Standard"
        assert [(fs.device, fs.type, fs.label) for fs in guest.filesystems] == [
            ("/dev/sda1", "ntfs", "Windows"), ("/dev/sda2", "ntfs", "Data")]
