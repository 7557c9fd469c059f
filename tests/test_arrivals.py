"""The bridge takes dropped files oldest first, without reading the whole directory on every tick
(app/intake/arrivals.py): files renamed in are taken in the order they came, a backlog found at start
by modification time then name, the full read runs once per ``resync`` (not per file), an inotify
overflow loses nothing, and without inotify it still finds every file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.intake import arrivals
from app.intake.arrivals import Arrivals


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    yield tmp_path, fd
    os.close(fd)


def drop(directory: Path, name: str, mtime: float | None = None) -> None:
    """Write aside, then rename in: the way a job file is dropped."""
    staged = directory / f".{name}.tmp"
    staged.write_text("{}")
    if mtime is not None:
        os.utime(staged, (mtime, mtime))
    os.rename(staged, directory / name)


def take(found: Arrivals) -> str | None:
    """The next name, claimed as the bridge claims it: moved out of the directory."""
    name = found.pop()
    if name is not None:
        os.unlink(os.path.join(found.path, name))
    return name


def drain(found: Arrivals) -> list[str]:
    names = []
    while (name := take(found)) is not None:
        names.append(name)
    return names


def test_files_are_taken_in_the_order_they_arrive_not_by_name(folder: tuple[Path, int]) -> None:
    path, fd = folder
    found = Arrivals(fd, str(path), clock=Clock())
    assert found.pop() is None and found.watching
    for name in ("zzz-first.json", "aaa-second.json", "mmm-third.json"):
        drop(path, name)
    (path / "notes.txt").write_text("not a job")
    drop(path, ".hidden.json")
    assert drain(found) == ["zzz-first.json", "aaa-second.json", "mmm-third.json"]
    assert found.full_reads == 1  # the first look only


def test_a_backlog_found_at_start_is_taken_by_modification_time_then_name(folder: tuple[Path, int]) -> None:
    path, fd = folder
    drop(path, "c.json", mtime=1_700_000_300)
    drop(path, "a.json", mtime=1_700_000_200)
    drop(path, "b.json", mtime=1_700_000_100)
    drop(path, "d.json", mtime=1_700_000_100)
    assert drain(Arrivals(fd, str(path), clock=Clock())) == ["b.json", "d.json", "a.json", "c.json"]


def test_the_directory_is_read_once_per_resync_whatever_the_backlog(folder: tuple[Path, int]) -> None:
    path, fd = folder
    for n in range(2000):
        drop(path, f"job-{n:05d}.json", mtime=1_700_000_000 + n)
    clock = Clock()
    found = Arrivals(fd, str(path), resync=30.0, clock=clock)
    taken = [take(found) for _ in range(1500)]
    drop(path, "late.json")
    taken += drain(found)
    assert taken == [f"job-{n:05d}.json" for n in range(2000)] + ["late.json"]  # the late one after the backlog
    assert found.full_reads == 1
    clock.now += 31  # the safety net: one full read per resync
    drop(path, "later.json")
    assert drain(found) == ["later.json"] and found.full_reads == 2


def test_an_overflowing_event_queue_loses_no_file(folder: tuple[Path, int]) -> None:
    path, fd = folder
    found = Arrivals(fd, str(path), clock=Clock())
    assert found.pop() is None
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    names = [f"flood-{n:06d}.json" for n in range(limit + 500)]
    for name in names:
        drop(path, name)
    assert sorted(drain(found)) == names
    assert found.full_reads == 2  # the overflow made it read the directory again


def test_without_inotify_every_file_is_still_found(folder: tuple[Path, int], monkeypatch: pytest.MonkeyPatch) -> None:
    path, fd = folder
    monkeypatch.setattr(arrivals, "_INOTIFY", None)
    found = Arrivals(fd, str(path), clock=Clock())
    assert found.pop() is None and not found.watching
    drop(path, "b.json", mtime=1_700_000_200)
    drop(path, "a.json", mtime=1_700_000_100)
    assert drain(found) == ["a.json", "b.json"]
