"""The tests' hive writer (tests/hivebuild.py) against libregf, the reader the worker uses: what
the Windows test guests hold is what a Windows registry would."""

from __future__ import annotations

import io

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
