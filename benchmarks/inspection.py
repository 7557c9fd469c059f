"""Inspect: time of ``guestkit.inspect`` on generated test images and on a 1 GiB image with a few hundred
packages, cold (first job of a freshly started worker) and warm; against the same handler called
directly in one process (no platform, no Celery) and, where installed, ``virt-inspector``.

    .venv/bin/python -m benchmarks.inspection --broker embedded|redis|rabbitmq|all [--quick] [--drop-caches]

Images are built in the temporary workspace with ``tests.imagebuild`` / ``tests.guestdata`` (sfdisk,
mke2fs -d under fakeroot, qemu-img; no root), and a Windows Server 2022 image with ``tests.guestdata_windows``
(mkntfs, libntfs-3g, ntfscp; hives written by ``tests.hivebuild``), and openSUSE and Fedora on btrfs with
``tests.btrfsbuild`` (a loop mount: root only; left out elsewhere). The 1 GiB image is the Debian tree of the tests with
``--packages`` extra dpkg packages (default 400), a /usr/share/doc file per package, 32 MiB of real data
and a sparse file that brings its ext4 file system to 1 GiB.
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


def build_images(base: Path, quick: bool, packages: int) -> dict[str, dict]:
    sys.path.insert(0, str(ROOT))
    from tests.guestdata import DEBIAN_PACKAGES, _dpkg_status, make_debian_tree, make_rhel_tree, make_rocky_tree
    from tests.imagebuild import build_image

    base.mkdir(parents=True, exist_ok=True)
    from tests.guestdata_windows import make_windows_tree

    specs = [("debian-plain.qcow2", make_debian_tree, "plain", "qcow2"),
             ("rhel-plain.raw", make_rhel_tree, "plain", "raw"),
             ("rhel-lvm-xfs.raw", make_rhel_tree, "rhel-lvm-xfs", "raw"),  # ext4 and XFS-on-LVM side by side
             ("windows-2022.qcow2", make_windows_tree, "windows", "qcow2")]  # NTFS and the registry
    if not quick:
        specs += [("debian-lvm.raw", make_debian_tree, "lvm", "raw"),
                  ("debian-gpt-efi.vmdk", make_debian_tree, "gpt-boot-efi", "vmdk"),
                  ("rhel-lvm-xfs.qcow2", make_rhel_tree, "rhel-lvm-xfs", "qcow2"),
                  ("rocky-xfs.qcow2", make_rocky_tree, "xfs", "qcow2")]
    images: dict[str, dict] = {}
    for name, maker, layout, fmt in specs:
        t0 = time.perf_counter()
        tree = base / f"{name}-root"
        maker(tree)
        build_image(tree, base / name, layout=layout, fmt=fmt)
        shutil.rmtree(tree, ignore_errors=True)
        images[name] = {"path": base / name, "build_s": time.perf_counter() - t0, "packages": None}
    _btrfs_guests(base, images)
    # the 1 GiB image: the Debian tree, a few hundred more packages, real data, and a sparse file
    t0 = time.perf_counter()
    tree = base / "big-root"
    make_debian_tree(tree)
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
    images[name] = {"path": base / name, "build_s": time.perf_counter() - t0,
                    "packages": len(DEBIAN_PACKAGES) + packages}
    if not quick:
        t0 = time.perf_counter()
        subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(base / name), str(base / "big-1GiB.qcow2")],
                       check=True)
        images["big-1GiB.qcow2"] = {"path": base / "big-1GiB.qcow2", "build_s": time.perf_counter() - t0,
                                    "packages": images[name]["packages"]}
    for meta in images.values():
        meta["size_mib"] = _virtual_size(meta["path"]) / MiB
    return images


def _btrfs_guests(base: Path, images: dict[str, dict]) -> None:
    """openSUSE Leap (root in the default snapper snapshot, /home and /var subvolumes) and Fedora (root and
    home subvolumes, zstd) on btrfs: built through the kernel on a loop mount, so only where that works."""
    from tests.btrfsbuild import btrfs_guest, loop_mounts_work
    from tests.guestdata import make_fedora_tree, make_opensuse_tree

    if not loop_mounts_work():
        print("(btrfs guests left out: building them needs root and loop mounts of btrfs)", flush=True)
        return
    for name, maker, kind, fmt in (("opensuse-btrfs.qcow2", make_opensuse_tree, "suse", "qcow2"),
                                   ("fedora-btrfs.raw", make_fedora_tree, "fedora", "raw")):
        t0 = time.perf_counter()
        tree = base / f"{name}-root"
        maker(tree)
        btrfs_guest(tree, base / name, kind, fmt)
        shutil.rmtree(tree, ignore_errors=True)
        images[name] = {"path": base / name, "build_s": time.perf_counter() - t0, "packages": None}


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
                    meta["found"] = _found(result["data"])
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


def _found(report: dict) -> str:
    os_ = report.get("os") or {}
    pk = report.get("packages") or {}
    return f"{os_.get('distribution')} {os_.get('version')}, {pk.get('count')} packages"


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
        images = build_images(setup.workspace / "images", args.quick, args.packages)
        print(f"built {len(images)} images in {time.perf_counter() - t0:.1f} s", flush=True)
        api = setup.platform_api()
        plat = run_platform(setup, api, images, warm_runs, args.drop_caches)
        direct = run_direct(images, warm_runs, args.drop_caches, setup.workspace)
        virt = virt_inspector(images)
        rows = []
        for name, meta in images.items():
            pf, d = plat[name], direct[name]
            row = [name, f"{meta['size_mib']:.0f}", meta.get("found", ""), pf["cold"] * 1000, pf["warm"] * 1000,
                   pf["warm_handler"] * 1000, d["cold"] * 1000, d["warm"] * 1000, f"{pf['warm'] / d['warm']:.2f}"]
            if virt is not None:
                row += [virt[name] * 1000, f"{pf['warm'] / virt[name]:.3f}"]
            rows.append(row)
        head = ["image", "MiB", "found", "job cold ms", "job warm ms", "handler warm ms", "direct cold ms",
                "direct warm ms", "job/direct"]
        if virt is not None:
            head += ["virt-inspector ms", "job/virt-inspector"]
        table(rows, head)
        print("job = submit -> result through the worker; handler = the result's execution_summary.duration_seconds;"
              " direct = InspectHandler.execute in one process (cold includes importing the engine)")
        if virt is None:
            print("virt-inspector: not installed on this machine (no libguestfs), no comparison")
        big = next(n for n in images if n.startswith("big"))
        print(f"RESULT inspect {setup.broker}: {big} warm {plat[big]['warm'] * 1000:.0f} ms, "
              f"cold {plat[big]['cold'] * 1000:.0f} ms; platform overhead on warm jobs "
              f"{statistics.median(plat[n]['warm'] / direct[n]['warm'] for n in images):.2f}x direct (median)")
    finally:
        setup.close()
    return 0


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
