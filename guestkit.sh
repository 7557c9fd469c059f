#!/usr/bin/env bash
# Sets up everything this project needs on a Debian machine, then runs it.
#   ./guestkit.sh run    the worker: embedded broker, file drop on ./jobs, results in ./results
#   ./guestkit.sh test   the whole test suite (ruff, then pytest)
# Idempotent: a second run installs nothing new. Needs root (or sudo) only to add Debian packages.
set -euo pipefail
cd "$(dirname "$0")"

VENV=${GUESTKIT_VENV:-.venv}
# Debian's own Python where there is one: a venv made from an interpreter under /root (pyenv) cannot
# run as the unprivileged user the worker should run as (README: Running without root)
PYTHON=${PYTHON:-$(command -v /usr/bin/python3 || command -v python3)}
# command -> Debian package providing it
DEBIAN_TOOLS="qemu-img:qemu-utils qemu-nbd:qemu-utils sfdisk:fdisk mkfs.vfat:dosfstools mcopy:mtools \
mke2fs:e2fsprogs debugfs:e2fsprogs fakeroot:fakeroot mkntfs:ntfs-3g"
# needed by the test command only: the browser test of Flower's pages, the two real brokers (the
# outage tests start and stop their own servers from these binaries), xfsprogs (the tests build XFS
# guests with mkfs.xfs -p and mend them with xfs_db), rpm (rpmbuild and rpm write the RHEL guests'
# rpm database, and read Berkeley DB ones as a second reader), db5.3-util (db5.3_load writes them) and
# cryptsetup-bin (luksFormat makes LUKS volumes in plain files; luksDump reads them back) and
# btrfs-progs (mkfs.btrfs packs the btrfs test guests; btrfs restore reads them back)
TEST_DEBIAN_TOOLS="chromium:chromium redis-server:redis-server rabbitmq-server:rabbitmq-server mkfs.xfs:xfsprogs xfs_db:xfsprogs rpmbuild:rpm db5.3_load:db5.3-util cryptsetup:cryptsetup-bin mkfs.btrfs:btrfs-progs"
# shared library -> Debian package (playwright's driver needs libatomic)
TEST_DEBIAN_LIBS="libatomic.so.1:libatomic1"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

debian_packages() {
  local missing=() tool pkg lib
  for pair in $DEBIAN_TOOLS ${1:-}; do
    tool=${pair%%:*}; pkg=${pair##*:}
    PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null 2>&1 || missing+=("$pkg")
  done
  for pair in ${2:-}; do
    lib=${pair%%:*}; pkg=${pair##*:}
    /sbin/ldconfig -p 2>/dev/null | grep -q "$lib" || missing+=("$pkg")
  done
  "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "guestkit: installing Debian packages: ${missing[*]}" >&2
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
      $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
  fi
}

python_env() {
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  local stamp="$VENV/.guestkit-installed" want
  want=$(sha256sum pyproject.toml | cut -c1-16)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "guestkit: installing Python packages into $VENV" >&2
    "$VENV/bin/pip" install -q --disable-pip-version-check -e '.[test]'
    echo "$want" > "$stamp"
  fi
}

export PATH="$PATH:/usr/sbin:/sbin"
case "${1:-}" in
  run)
    shift
    debian_packages; python_env
    mkdir -p jobs results
    exec "$VENV/bin/celery" -A app worker -l info "$@"
    ;;
  test)
    shift
    debian_packages "$TEST_DEBIAN_TOOLS" "$TEST_DEBIAN_LIBS"; python_env
    # a marker expression (-m "not slow": the quick lane) also narrows the runs on each broker
    marks="" args=()
    while [ $# -gt 0 ]; do
      case "$1" in
        -m) marks=$2; shift 2 ;;
        -m*) marks=${1#-m}; shift ;;
        *) args+=("$1"); shift ;;
      esac
    done
    "$VENV/bin/ruff" check .
    # three runs side by side: the suite (its output as it goes), and the integration suite (marked
    # "broker") once more on each real broker, printed when it ends. Each pytest process has its own
    # workspace, embedded broker, job-store prefix, pools and queues (tests/conftest.py), so they share
    # nothing. Most of the suite's time is waiting for workers and jobs, hence more test processes than
    # cores (-n; one given here wins). A real broker gets one test process: Flower and Celery's broadcasts
    # see every worker on it, and test_flower counts on seeing only its own.
    logs=$(mktemp -d "${TMPDIR:-/tmp}/guestkit-lanes-XXXXXX")
    brokers=(redis rabbitmq) pids=()
    for broker in "${brokers[@]}"; do
      "$VENV/bin/python" -m pytest -q -p no:cacheprovider -m "broker${marks:+ and ($marks)}" --broker="$broker" \
        "${args[@]}" > "$logs/$broker.log" 2>&1 &
      pids+=($!)
    done
    trap 'kill "${pids[@]}" 2>/dev/null' INT TERM
    failed=()
    "$VENV/bin/python" -m pytest -q -n "${GUESTKIT_TEST_PROCESSES:-4}" --dist loadfile ${marks:+-m "$marks"} "${args[@]}" \
      || failed+=(suite)
    for i in "${!brokers[@]}"; do
      broker=${brokers[$i]}
      echo "guestkit: integration suite on $broker" >&2
      rc=0; wait "${pids[$i]}" || rc=$?
      [ "$rc" = 0 ] || [ "$rc" = 5 ] || failed+=("$broker")  # 5: the options chose no broker test
      cat "$logs/$broker.log"
    done
    rm -rf "$logs"
    if [ ${#failed[@]} -gt 0 ]; then
      echo "guestkit: failed: ${failed[*]}" >&2
      exit 1
    fi
    ;;
  *)
    echo "usage: $0 run [celery worker options] | test [pytest options]" >&2
    exit 2
    ;;
esac
