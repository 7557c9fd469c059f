"""Default configuration of guestkit-worker. Every setting can be overridden by environment.

Celery's own settings use Celery's names (``CELERY_BROKER_URL`` is honoured by Celery itself);
the platform's settings are the ``guestkit_*`` ones, each read from ``GUESTKIT_<NAME>``.
The README's settings table lists them all.
"""

import os
import socket


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _list(name: str, default: str, separators: str = ",") -> list[str]:
    text = _env(name, default)
    for separator in separators[1:]:
        text = text.replace(separator, separators[0])
    return [item.strip() for item in text.split(separators[0]) if item.strip()]


def _abs(path: str) -> str:
    return os.path.abspath(path)


# --- the platform --------------------------------------------------------------------------
guestkit_home = _abs(_env("GUESTKIT_HOME", ".guestkit"))
#: job store: file:///path (embedded default) or redis://host:port/db
guestkit_store_url = _env("GUESTKIT_STORE_URL", "file://" + os.path.join(guestkit_home, "store"))
guestkit_results_dir = _abs(_env("GUESTKIT_RESULTS_DIR", "results"))
guestkit_jobs_dir = _abs(_env("GUESTKIT_JOBS_DIR", "jobs"))
#: run the file-drop bridge inside the worker (a timer bootstep): 1 / 0
guestkit_bridge_in_worker = _env("GUESTKIT_BRIDGE", "1") == "1"
guestkit_bridge_interval = float(_env("GUESTKIT_BRIDGE_INTERVAL", "0.01"))
#: seconds a dropped file that does not parse must stay unchanged before it is judged bad
guestkit_bridge_settle = float(_env("GUESTKIT_BRIDGE_SETTLE", "1.0"))
#: directories every payload path must resolve into (colon separated)
guestkit_allowed_dirs = [_abs(p) for p in _list("GUESTKIT_ALLOWED_DIRS", ".", ",:")]
#: backing files an image may have below it (each inside the allowed dirs); 0 = no backing file at all
guestkit_max_chain_depth = int(_env("GUESTKIT_MAX_CHAIN_DEPTH", "0"))
guestkit_work_dir = _abs(_env("GUESTKIT_WORK_DIR", os.path.join(guestkit_home, "work")))
guestkit_timeout_ceiling = int(_env("GUESTKIT_TIMEOUT_CEILING", "86400"))
#: seconds between the soft time limit (job ends ``timeout``) and the hard kill
guestkit_timeout_grace = int(_env("GUESTKIT_TIMEOUT_GRACE", "5"))
#: the pools this worker serves; the first is where jobs without routing go
guestkit_pools = _list("GUESTKIT_POOLS", "default")
guestkit_worker_id = _env("GUESTKIT_WORKER_ID", socket.gethostname())
#: extra capabilities this worker advertises and matches against constraints
guestkit_capabilities = _list("GUESTKIT_CAPABILITIES", "")
guestkit_privileged = _env("GUESTKIT_PRIVILEGED", "0") == "1"
#: extra handler classes (module:Class), besides the entry-point group
guestkit_extra_handlers = _list("GUESTKIT_EXTRA_HANDLERS", "")
#: graceful shutdown: on SIGTERM, in-flight jobs get this long to finish, then they are
#: stopped and their messages go back to the queue for another worker
guestkit_shutdown_grace = float(_env("GUESTKIT_SHUTDOWN_GRACE", "30"))
#: seconds between worker heartbeats (advertisement in the job store; it lapses after 3 missed)
guestkit_heartbeat_interval = float(_env("GUESTKIT_HEARTBEAT_INTERVAL", "5"))
#: seconds a job no live worker can run waits for one before it fails CAPABILITY_MISMATCH
guestkit_capability_wait = float(_env("GUESTKIT_CAPABILITY_WAIT", "60"))
#: seconds a running job's lease lasts without refresh on a shared (Redis) store; a duplicate
#: delivery of a job whose runner is alive waits for it instead of running the job twice
guestkit_run_lease = float(_env("GUESTKIT_RUN_LEASE", "30"))
#: seconds a job may stay queued before a worker publishes it again, in case the broker lost its
#: message (a duplicate never runs twice); jobs waiting in a long backlog just get a second message
guestkit_requeue_after = float(_env("GUESTKIT_REQUEUE_AFTER", "600"))
#: seconds between retries of a recoverable failure: base * 2 ** (attempt - 1)
guestkit_retry_backoff = float(_env("GUESTKIT_RETRY_BACKOFF", "1.0"))

# --- what one job may consume (app/plugin/limits.py says where each is enforced) ---------------
#: bytes read from any one file inside a guest (a file cut short is listed in the report's "truncated")
guestkit_max_file_bytes = int(_env("GUESTKIT_MAX_FILE_BYTES", str(512 * 1024 * 1024)))
#: entries parsed from any one guest database (packages) or configuration file (lines)
guestkit_max_entries = int(_env("GUESTKIT_MAX_ENTRIES", "100000"))
#: directory levels below its start, and entries, one walk of a guest's tree looks at
guestkit_max_tree_depth = int(_env("GUESTKIT_MAX_TREE_DEPTH", "64"))
guestkit_max_tree_entries = int(_env("GUESTKIT_MAX_TREE_ENTRIES", "200000"))
#: partitions and logical volumes looked at in one image
guestkit_max_volumes = int(_env("GUESTKIT_MAX_VOLUMES", "256"))
#: free space in MiB every output (converted image, fixed image, backup) must leave on its file system
guestkit_output_reserve_mb = int(_env("GUESTKIT_OUTPUT_RESERVE_MB", "1024"))
#: MiB a job may write into its work directory (fix's raw working copy of the image)
guestkit_max_work_dir_mb = int(_env("GUESTKIT_MAX_WORK_DIR_MB", "65536"))
#: address space of each pool child in MiB (RLIMIT_AS, qemu-img and qemu-nbd included); 0: no limit
guestkit_child_memory_mb = int(_env("GUESTKIT_CHILD_MEMORY_MB", "4096"))
#: size of one result document (compact JSON) in bytes
guestkit_max_result_bytes = int(_env("GUESTKIT_MAX_RESULT_BYTES", str(64 * 1024 * 1024)))

# --- Celery ---------------------------------------------------------------------------------
broker_url = _env("CELERY_BROKER_URL", "embedded://" + os.path.join(guestkit_home, "broker"))
result_backend = "guestkit://"
broker_connection_retry_on_startup = True
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
task_acks_late = True
task_reject_on_worker_lost = True
#: seconds the pool waits for the result of a job whose process died before it calls the process lost
#: (Celery's worker_lost_wait; the job store holds each job's state, so nothing is lost by waiting less)
worker_lost_wait = float(_env("GUESTKIT_WORKER_LOST_WAIT", "10"))
worker_prefetch_multiplier = 1
task_default_queue = guestkit_pools[0]
worker_concurrency = int(_env("GUESTKIT_CONCURRENCY", str(os.cpu_count() or 2)))
worker_hijack_root_logger = True
broker_transport_options = {
    # Redis: a message a dead worker took comes back after this many seconds. It must be above
    # the longest job (the timeout ceiling plus the grace), or running jobs get delivered twice.
    "visibility_timeout": int(_env("GUESTKIT_VISIBILITY_TIMEOUT",
                                   str(guestkit_timeout_ceiling + 2 * guestkit_timeout_grace + 30))),
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
    "polling_interval": float(_env("GUESTKIT_BROKER_POLL", "0.01")),
    # Redis: one step per contract priority (kombu's default buckets 0-9 into four steps)
    "queue_order_strategy": "priority",
    "priority_steps": list(range(10)),
}
