"""Inspect: time of ``guestkit.inspect`` on each kind of guest the tests build and on a 1 GiB image with a few
hundred packages, cold (first job of a freshly started worker) and warm; against the same handler called
directly in one process (no platform, no Celery) and, where installed, ``virt-inspector``; each kind's job
time as a ratio to the Debian ext4 guest's in the same image format (``debian-plain.qcow2``, ``debian-plain.raw``:
a qcow2 image is read through qemu-nbd, which costs tens of milliseconds a raw one does not), goal: every kind
within 3x, warm and cold.

    .venv/bin/python -m benchmarks.inspection --broker embedded|redis|rabbitmq|all [--quick] [--drop-caches]

Images are built in the temporary workspace with ``tests.imagebuild`` / ``tests.guestdata`` (sfdisk,
mke2fs -d under fakeroot, qemu-img; no root). The kinds (``--quick`` builds the first image of each):
Debian on ext4 (the reference; full: on LVM, GPT+EFI vmdk), RHEL 9 on ext4 and on XFS in LVM (full: qcow2,
and Rocky 9 on XFS), CentOS 7 on XFS (full: XFS on LVM, qcow2), Alpine and Arch on ext4
(``tests.guestdata_alpine_arch``; full: the other format too), Windows Server 2022 (``tests.guestdata_windows``:
mkntfs, libntfs-3g, ntfscp; hives written by ``tests.hivebuild``), Debian with /home on a LUKS2 volume
(``tests.cryptbuild``: ``cryptsetup luksFormat`` on a file, no root; full: LUKS1 raw too; left out without
cryptsetup; the engine reads the LUKS header and lists the volume, it takes no key and opens nothing), and
openSUSE and Fedora on btrfs (``tests.btrfsbuild``: a loop mount, root only; left out elsewhere). A kind left
out, or whose distribution the job does not report, is named in the output. The 1 GiB image (not in the
kinds' goal: it measures size) is the Debian tree of the tests with ``--packages`` extra dpkg packages
(default 400), a /usr/share/doc file per package, 32 MiB of real data and a sparse file that brings its ext4
file system to 1 GiB (full: a qcow2 copy too).
``--drop-caches`` writes /proc/sys/vm/drop_caches before each cold run (root; affects the whole host).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import ROOT, fan_out, header, make_setup, parser, table

MiB = 1024 * 1024


def _extra_packages(count: int) -> list[tuple[str, str, str]]:
    return [(f"bench-pkg-{i:04d}", f"1.{i % 17}.{i % 5}-{1 + i % 3}", "amd64") for i in range(count)]


#: the references of the kinds' goal, by image format: the Debian ext4 guest; every other kind's job within
#: GOAL_RATIO of the time of the reference in its format (the one of qcow2 for the others: vmdk, vdi)
REFERENCES = {"qcow2": "debian-plain.qcow2", "raw": "debian-plain.raw"}
GOAL_RATIO = 3.0


def reference_of(name: str) -> str:
    return REFERENCES.get(name.rsplit(".", 1)[-1], REFERENCES["qcow2"])


def build_images(base: Path, quick: bool, packages: int, left_out: list[str]) -> dict[str, dict]:
    """The images by name: path, build time, the distribution the job should report (``expect``) and
    ``big`` (the 1 GiB images, out of the kinds' goal). Kinds this machine cannot build go to ``left_out``."""
    sys.path.insert(0, str(ROOT))
    from tests.guestdata import (
        DEBIAN_PACKAGES,
        _dpkg_status,
        make_centos7_tree,
        make_debian_tree,
        make_rhel_tree,
        make_rocky_tree,
    )
    from tests.guestdata_alpine_arch import make_alpine_tree, make_arch_tree
    from tests.guestdata_windows import make_windows_tree
    from tests.imagebuild import build_image

    base.mkdir(parents=True, exist_ok=True)
    # layouts and formats as the tests build them (test_rpm_guests, test_alpine_arch_guests, ...)
    specs = [(REFERENCES["qcow2"], make_debian_tree, "plain", "qcow2"),
             (REFERENCES["raw"], make_debian_tree, "plain", "raw"),
             ("rhel-plain.raw", make_rhel_tree, "plain", "raw"),
             ("rhel-lvm-xfs.raw", make_rhel_tree, "rhel-lvm-xfs", "raw"),  # ext4 and XFS-on-LVM side by side
             ("centos7-xfs.raw", make_centos7_tree, "xfs", "raw"),  # Berkeley DB rpm database
             ("alpine-ext4.qcow2", make_alpine_tree, "plain", "qcow2"),  # apk, OpenRC, busybox
             ("arch-ext4.raw", make_arch_tree, "plain", "raw"),  # pacman, systemd
             ("windows-2022.qcow2", make_windows_tree, "windows", "qcow2")]  # NTFS and the registry
    if not quick:
        specs += [("debian-lvm.raw", make_debian_tree, "lvm", "raw"),
                  ("debian-gpt-efi.vmdk", make_debian_tree, "gpt-boot-efi", "vmdk"),
                  ("rhel-lvm-xfs.qcow2", make_rhel_tree, "rhel-lvm-xfs", "qcow2"),
                  ("rocky-xfs.qcow2", make_rocky_tree, "xfs", "qcow2"),
                  ("centos7-lvm-xfs.qcow2", make_centos7_tree, "rhel-lvm-xfs", "qcow2"),
                  ("alpine-ext4.raw", make_alpine_tree, "plain", "raw"),
                  ("arch-ext4.qcow2", make_arch_tree, "plain", "qcow2")]
    images: dict[str, dict] = {}
    for name, maker, layout, fmt in specs:
        t0 = time.perf_counter()
        tree = base / f"{name}-root"
        truth = maker(tree)
        build_image(tree, base / name, layout=layout, fmt=fmt)
        shutil.rmtree(tree, ignore_errors=True)
        images[name] = _meta(base / name, t0, truth)
    _luks_guests(base, images, quick, left_out)
    _btrfs_guests(base, images, left_out)
    # the 1 GiB image: the Debian tree, a few hundred more packages, real data, and a sparse file
    t0 = time.perf_counter()
    tree = base / "big-root"
    truth = make_debian_tree(tree)
    extra = _extra_packages(packages)
    (tree / "var/lib/dpkg/status").write_text(_dpkg_status(DEBIAN_PACKAGES + extra))
    info = tree / "var/lib/dpkg/info"
    info.mkdir(parents=True, exist_ok=True)
    for pkg, _, _ in extra:
        (info / f"{pkg}.list").write_text(f"/usr/share/doc/{pkg}\n/usr/share/doc/{pkg}/copyright\n")
        doc = tree / "usr/share/doc" / pkg
        doc.mkdir(parents=True, exist_ok=True)
        (doc / "copyright").write_text(f"{pkg}: public domain\n" * 20)
    data = tree / "srv/data"
    data.mkdir(parents=True, exist_ok=True)
    for i in range(8):
        (data / f"blob{i}.bin").write_bytes(os.urandom(4 * MiB))
    with open(tree / "srv/data/sparse.img", "wb") as handle:
        handle.truncate(740 * MiB)  # _fs_mib: 1.3 x tree + 8 MiB -> a 1 GiB file system
    name = "big-1GiB.raw"
    build_image(tree, base / name, layout="plain", fmt="raw")
    shutil.rmtree(tree, ignore_errors=True)
    images[name] = _meta(base / name, t0, truth, packages=len(DEBIAN_PACKAGES) + packages, big=True)
    if not quick:
        t0 = time.perf_counter()
        subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(base / name), str(base / "big-1GiB.qcow2")],
                       check=True)
        images["big-1GiB.qcow2"] = _meta(base / "big-1GiB.qcow2", t0, truth, packages=images[name]["packages"],
                                         big=True)
    for meta in images.values():
        meta["size_mib"] = _virtual_size(meta["path"]) / MiB
    return images


def _meta(path: Path, t0: float, truth: dict, *, packages: int | None = None, big: bool = False) -> dict:
    return {"path": path, "build_s": time.perf_counter() - t0, "packages": packages,
            "expect": truth["os"]["distribution"], "big": big}


def _luks_guests(base: Path, images: dict[str, dict], quick: bool, left_out: list[str]) -> None:
    """Debian with /home on an encrypted volume (LUKS2; full: LUKS1 too), as test_encrypted_volumes builds it:
    MBR, /dev/sda1 the ext4 root, /dev/sda2 the volume, named in /etc/crypttab and fstab. The engine reads the
    volume's header without a key (no job field takes one): the guest is read, the volume listed, not opened."""
    from tests.cryptbuild import disk_with, luks_volume
    from tests.guestdata import make_debian_tree

    kinds = [("debian-luks2-home.qcow2", 2, "qcow2")] + ([] if quick else [("debian-luks1-home.raw", 1, "raw")])
    if shutil.which("cryptsetup") is None:
        print("(LUKS guests left out: cryptsetup is not installed)", flush=True)
        left_out += [name for name, _, _ in kinds]
        return
    for name, version, fmt in kinds:
        t0 = time.perf_counter()
        tree, volume = base / f"{name}-root", base / f"{name}.luks"
        truth = make_debian_tree(tree)
        try:
            header = luks_volume(volume, version, label="home")
        except (RuntimeError, OSError) as exc:
            print(f"(LUKS guest {name} left out: {str(exc).strip()[:300]})", flush=True)
            left_out.append(name)
            shutil.rmtree(tree, ignore_errors=True)
            continue
        (tree / "etc/crypttab").write_text(f"# <name> <device> <key> <options>\nhome UUID={header['uuid']} none luks\n")
        disk_with(volume, base / name, tree, fmt, fstab=["LABEL=boot\t/\text4\tdefaults\t0\t1",
                                                         "/dev/mapper/home\t/home\text4\tdefaults\t0\t2"])
        volume.unlink()
        shutil.rmtree(tree, ignore_errors=True)
        images[name] = _meta(base / name, t0, truth)


def _btrfs_guests(base: Path, images: dict[str, dict], left_out: list[str]) -> None:
    """openSUSE Leap (root in the default snapper snapshot, /home and /var subvolumes) and Fedora (root and
    home subvolumes, zstd) on btrfs: built through the kernel on a loop mount, so only where that works."""
    from tests.btrfsbuild import btrfs_guest, loop_mounts_work
    from tests.guestdata import make_fedora_tree, make_opensuse_tree

    kinds = (("opensuse-btrfs.qcow2", make_opensuse_tree, "suse", "qcow2"),
             ("fedora-btrfs.raw", make_fedora_tree, "fedora", "raw"))
    if not loop_mounts_work():
        print("(btrfs guests left out: building them needs root and loop mounts of btrfs)", flush=True)
        left_out += [name for name, _, _, _ in kinds]
        return
    for name, maker, kind, fmt in kinds:
        t0 = time.perf_counter()
        tree = base / f"{name}-root"
        truth = maker(tree)
        btrfs_guest(tree, base / name, kind, fmt)
        shutil.rmtree(tree, ignore_errors=True)
        images[name] = _meta(base / name, t0, truth)


def _virtual_size(path: Path) -> int:
    out = subprocess.run(["qemu-img", "info", "--output=json", str(path)], capture_output=True, check=True)
    return json.loads(out.stdout)["virtual-size"]


def _drop_caches(enabled: bool) -> None:
    if enabled:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")


def inspect_job(tag: str, n: str, image: Path) -> dict:
    return {"version": "1.0", "job_id": f"bench-{tag}-inspect-{n}", "created_at": "2026-01-30T15:00:00Z",
            "kind": "VMOperation", "operation": "guestkit.inspect",
            "execution": {"timeout_seconds": 600, "priority": 5},
            "payload": {"type": "guestkit.inspect.v1", "data": {"image": {"path": str(image)}}}}


def run_platform(setup, api, images: dict, warm_runs: int, drop: bool) -> dict[str, dict]:
    out = {}
    for name, meta in images.items():
        _drop_caches(drop)
        worker = setup.platform_worker(f"inspect-{name.replace('.', '-')}")
        times, handler = [], []
        try:
            for i in range(1 + warm_runs):
                if i == 1:  # warm every prefork child once (jobs at the same time land on different children)
                    warmers = [api.submit(inspect_job(setup.tag, f"{name}-warm{c}", meta["path"]))
                               for c in range(setup.concurrency)]
                    for h in warmers:
                        _wait(setup.results_dir / f"{h.job_id}-result.json")
                job = inspect_job(setup.tag, f"{name}-{i}", meta["path"])
                t0 = time.perf_counter()
                api.submit(job)
                path = setup.results_dir / f"{job['job_id']}-result.json"
                _wait(path)
                times.append(time.perf_counter() - t0)
                result = json.loads(path.read_bytes())
                if result["status"] != "completed":
                    raise SystemExit(f"inspect of {name} did not complete: {json.dumps(result)[:1500]}")
                handler.append(result["execution_summary"]["duration_seconds"])
                if i == 0:
                    meta["found"], meta["detected"] = _found(result["data"], meta["expect"])
        finally:
            worker.stop()
        out[name] = {"cold": times[0], "warm": statistics.median(times[1:]), "cold_handler": handler[0],
                     "warm_handler": statistics.median(handler[1:])}
    return out


def _wait(path: Path, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no result {path} after {timeout} s")
        time.sleep(0.0005)


def _found(report: dict, expect: str) -> tuple[str, bool]:
    """What the job found (distribution or Windows product, version, packages, encrypted volumes), and
    whether it is the distribution the image was built as."""
    os_ = report.get("os") or {}
    pk = report.get("packages") or {}
    distribution = os_.get("distribution")
    name = os_.get("name") if distribution == "windows" and os_.get("name") else distribution
    text = " ".join(str(part) for part in (name, os_.get("version")) if part) + f", {pk.get('count')} packages"
    for fs in (report.get("storage") or {}).get("filesystems") or []:
        if fs.get("encryption"):
            text += f", {fs['encryption'].get('scheme')} {fs.get('device')}"
    if distribution != expect:
        text += f" (NOT DETECTED: built as {expect})"
    return text, distribution == expect


def run_direct(images: dict, warm_runs: int, drop: bool, workspace: Path) -> dict[str, dict]:
    """The handler called in a fresh Python process: no Celery, no job store, no result file."""
    out = {}
    for name, meta in images.items():
        _drop_caches(drop)
        proc = subprocess.run([sys.executable, "-m", "benchmarks.inspection", "--direct-child", str(meta["path"]),
                               "--warm-runs", str(warm_runs), "--workspace", str(workspace)],
                              cwd=ROOT, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"direct inspect of {name} failed:\n{proc.stderr[-2000:]}")
        out[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def direct_child(image: str, warm_runs: int, workspace: str) -> None:
    t_import = time.perf_counter()
    sys.path.insert(0, str(ROOT))
    from handlers.inspect import InspectHandler
    from handlers.payloads import InspectPayloadV1
    from tests.imagebuild import FakeContext

    handler = InspectHandler()
    imported = time.perf_counter() - t_import
    times = []
    for i in range(1 + warm_runs):
        ctx = FakeContext([Path(workspace)], Path(workspace) / "direct-work" / str(i))
        t0 = time.perf_counter()
        handler.execute(ctx, InspectPayloadV1.model_validate({"image": {"path": image}}))
        times.append(time.perf_counter() - t0)
    print(json.dumps({"cold": times[0] + imported, "cold_no_import": times[0], "warm": statistics.median(times[1:])}))


def virt_inspector(images: dict) -> dict[str, float] | None:
    tool = shutil.which("virt-inspector")
    if tool is None:
        return None
    out = {}
    for name, meta in images.items():
        t0 = time.perf_counter()
        subprocess.run([tool, "-a", str(meta["path"]), "--no-icon"], capture_output=True, check=False, timeout=900)
        out[name] = time.perf_counter() - t0
    return out


def main(argv: list[str]) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--packages", type=int, default=400, help="extra dpkg packages in the 1 GiB image")
    p.add_argument("--warm-runs", type=int, help="warm runs per image (median; default 5, --quick 2)")
    p.add_argument("--drop-caches", action="store_true", help="drop the page cache before each cold run (root)")
    p.add_argument("--direct-child", help=argparse_hidden())
    p.add_argument("--workspace", help=argparse_hidden())
    args = p.parse_args(argv)
    if args.direct_child:
        direct_child(args.direct_child, args.warm_runs, args.workspace)
        return 0
    code = fan_out("benchmarks.inspection", args, argv)
    if code is not None:
        return code
    warm_runs = args.warm_runs or (2 if args.quick else 5)
    setup = make_setup(args.broker, args.concurrency, args.keep, store=args.store, events=args.events)
    try:
        header("inspect", setup, f"cold = first job of a fresh worker (page cache "
               f"{'dropped' if args.drop_caches else 'warm'}); warm = median of {warm_runs}")
        t0 = time.perf_counter()
        left_out: list[str] = []
        images = build_images(setup.workspace / "images", args.quick, args.packages, left_out)
        print(f"built {len(images)} images in {time.perf_counter() - t0:.1f} s", flush=True)
        api = setup.platform_api()
        plat = run_platform(setup, api, images, warm_runs, args.drop_caches)
        direct = run_direct(images, warm_runs, args.drop_caches, setup.workspace)
        virt = virt_inspector(images)
        ratio = {n: {k: plat[n][k] / plat[reference_of(n)][k] for k in ("warm", "cold")} for n in images}
        rows = []
        for name, meta in images.items():
            pf, d = plat[name], direct[name]
            # the big images are out of the kinds' goal (they measure size): their ratios in brackets
            shown = [f"({ratio[name][k]:.2f})" if meta["big"] else f"{ratio[name][k]:.2f}" for k in ("cold", "warm")]
            row = [name, f"{meta['size_mib']:.0f}", meta.get("found", ""), pf["cold"] * 1000, pf["warm"] * 1000,
                   *shown, pf["warm_handler"] * 1000, d["cold"] * 1000, d["warm"] * 1000,
                   f"{pf['warm'] / d['warm']:.2f}"]
            if virt is not None:
                row += [virt[name] * 1000, f"{pf['warm'] / virt[name]:.3f}"]
            rows.append(row)
        head = ["image", "MiB", "found", "job cold ms", "job warm ms", "cold/ext4", "warm/ext4", "handler warm ms",
                "direct cold ms", "direct warm ms", "job/direct"]
        if virt is not None:
            head += ["virt-inspector ms", "job/virt-inspector"]
        table(rows, head)
        print("job = submit -> result through the worker; handler = the result's execution_summary.duration_seconds;"
              " direct = InspectHandler.execute in one process (cold includes importing the engine); cold/ext4,"
              f" warm/ext4 = the job's time over that of the Debian ext4 guest in the same format "
              f"({', '.join(REFERENCES.values())}; in brackets: the 1 GiB images, not in the goal)")
        if virt is None:
            print("virt-inspector: not installed on this machine (no libguestfs), no comparison")
        big = next(n for n in images if n.startswith("big"))
        print(f"RESULT inspect {setup.broker}: {big} warm {plat[big]['warm'] * 1000:.0f} ms, "
              f"cold {plat[big]['cold'] * 1000:.0f} ms; platform overhead on warm jobs "
              f"{statistics.median(plat[n]['warm'] / direct[n]['warm'] for n in images):.2f}x direct (median)")
        print(_kinds_result(setup.broker, images, plat, ratio, left_out))
    finally:
        setup.close()
    return 0


def _kinds_result(broker: str, images: dict, plat: dict, ratio: dict, left_out: list[str]) -> str:
    kinds = [n for n in images if not images[n]["big"] and n not in REFERENCES.values()]
    worst = {k: max(kinds, key=lambda n: ratio[n][k]) for k in ("warm", "cold")}
    met = all(ratio[n][k] <= GOAL_RATIO for n in kinds for k in ("warm", "cold"))
    slow = [n for n in kinds if max(ratio[n].values()) > GOAL_RATIO]
    refs = "; ".join(f"{ref} warm {plat[ref]['warm'] * 1000:.0f} ms, cold {plat[ref]['cold'] * 1000:.0f} ms"
                     for ref in REFERENCES.values())
    text = (f"RESULT inspect kinds {broker}: {len(kinds)} images against the Debian ext4 guest in their format "
            f"({refs}): worst warm {worst['warm']} "
            f"{ratio[worst['warm']]['warm']:.2f}x, worst cold {worst['cold']} {ratio[worst['cold']]['cold']:.2f}x; "
            f"every kind within {GOAL_RATIO:g}x of ext4, warm and cold: {'MET' if met else 'NOT MET'}")
    if slow:
        text += f" (over: {', '.join(slow)})"
    undetected = [n for n in images if not images[n].get("detected")]
    if undetected:
        text += f"; distribution not detected: {', '.join(undetected)}"
    if left_out:
        text += f"; left out on this machine: {', '.join(left_out)}"
    return text


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
