# Copyright: streamcloud platform engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Command line of the cron job (/usr/local/sbin/streamcloud-backup): the modules' functions.

  streamcloud-backup run [--config FILE] [--cron]  dumps, archive, ship, status file, one JSON log line
  streamcloud-backup rotate --path DIR ...         retention on the backup host
  streamcloud-backup choose --path DIR --source S  the archive a restore takes (backup host, read-only)
  streamcloud-backup scrub --path DIR [--status-file F]  re-hash every stored archive, quarantine a bad one
                                                  (backup host; exit 3 when one was bad)
  streamcloud-backup restore --archive F ...       verify and restore one archive

The random delay (``splay``) applies only with ``--cron`` (the cron entry), never to a manual run.

``run`` holds a lock so that two runs never overlap: the second waits up to ``lock_wait`` seconds,
then exits 0 with status ``skipped``. Any failure: status ``failed``, a clear message, exit 1.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import random
import socket
import sys
import time

from ansible_collections.streamcloud.platform.plugins.module_utils._backup import (
    archive,
    options,
    restore,
    rotate,
    scrub,
    transfer,
)
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.errors import BackupError
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.files import atomic_write_text
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.names import check_source, utcnow

# The scrub found a corrupted archive (the receiver's code for a checksum mismatch).
EXIT_BAD = 3
# Every setting of config.json and its default: the modules' options (options.py) and the run's own.
DEFAULTS = options.config_defaults()


def load_config(path):
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise BackupError(f"cannot read the configuration {path}: {exc}") from exc
    unknown = sorted(set(data) - set(DEFAULTS))
    if unknown:
        raise BackupError(f"{path}: unknown setting(s) {', '.join(unknown)}")
    config = dict(DEFAULTS, **data)
    for key in ("outbox", "host", "user"):
        if not config[key]:
            raise BackupError(f"{path}: {key} is not set")
    if not config["source"]:
        config["source"] = socket.gethostname().split(".")[0]
    check_source(config["source"], f"{path}: source")
    return config


def acquire_lock(path, wait):
    handle = open(path, "a")  # noqa: SIM115 - held for the whole run, released at exit
    deadline = time.monotonic() + max(0, wait)
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if time.monotonic() >= deadline:
                handle.close()
                return None
            time.sleep(1)


def run(config, out=sys.stdout, cron=False):
    started = utcnow()
    status = {"event": "streamcloud-backup", "source": config["source"], "started": started.isoformat()}
    if cron and config["splay"]:
        time.sleep(random.uniform(0, config["splay"]))  # noqa: S311 - spreading cron runs, not security
    lock = acquire_lock(config["lock_file"], config["lock_wait"])
    if lock is None:
        status.update(status="skipped", message=f"another run holds {config['lock_file']}; this one exits")
        _report(config, status, out, write_status=False)
        return 0
    code = 0
    try:
        made = archive.archive(config)
        status.update(archive=made["name"], sha256=made["sha256"], size=made["size"], files=made["files"],
                      databases=made["databases"], skipped=made["skipped"], warnings=made["warnings"],
                      removed_leftovers=made.get("removed_leftovers", []))
        shipped = transfer.transfer(config, config["outbox"])
        status.update(transferred=[t["name"] for t in shipped["transferred"]], pending=shipped["pending"],
                      deleted_local=shipped["deleted_local"], kept_local=shipped["kept_local"])
        if shipped["failed"]:
            code = 1
            status.update(status="failed", error="; ".join(f"{f['name']}: {f['error']}" for f in shipped["failed"])
                          + f"; {len(shipped['pending'])} archive(s) kept in {config['outbox']} for the next run")
        elif made["skipped"]:
            status.update(status="incomplete", message=f"skipped {len(made['skipped'])} entr(y/ies) that cannot be "
                          f"archived (sockets): {', '.join(made['skipped'][:5])}")
        else:
            status["status"] = "ok"
    except BackupError as exc:
        code = 1
        status.update(status="failed", error=str(exc))
    finally:
        status["finished"] = utcnow().isoformat()
        status["duration_s"] = round((utcnow() - started).total_seconds(), 3)
        _report(config, status, out)
        lock.close()
    return code


def json_line(**fields) -> str:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"))


def _report(config, status, out, write_status=True):
    line = json_line(**status)
    out.write(line + "\n")
    out.flush()
    if status.get("status") == "failed":
        sys.stderr.write(f"streamcloud-backup: FAILED: {status.get('error')}\n")
    try:
        os.makedirs(os.path.dirname(config["log_file"]), exist_ok=True)
        with open(config["log_file"], "a", encoding="utf-8") as log:
            log.write(line + "\n")
        if write_status:
            os.makedirs(os.path.dirname(config["status_file"]), exist_ok=True)
            atomic_write_text(config["status_file"], json.dumps(status, sort_keys=True, indent=1) + "\n")
    except OSError as exc:
        sys.stderr.write(f"streamcloud-backup: cannot write the log or status file: {exc}\n")


def parser():
    top = argparse.ArgumentParser(prog="streamcloud-backup", description=__doc__.split("\n", maxsplit=1)[0])
    sub = top.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="dumps, archive, ship")
    r.add_argument("--config", default="/etc/streamcloud-backup/config.json")
    r.add_argument("--cron", action="store_true", help="started by cron: wait the random splay first")
    rot = sub.add_parser("rotate", help="retention on the backup host")
    rot.add_argument("--path", required=True)
    rot.add_argument("--recurse", action="store_true")
    rot.add_argument("--check", action="store_true", help="list what would be deleted")
    rot.add_argument("--no-verify", "--no-verify-newest", dest="no_verify", action="store_true",
                     help="do not hash the kept archives before deleting (a sidecar is enough)")
    rot.add_argument("--max-future-skew", type=int, default=3600,
                     help="seconds a name may be after its receive time before it is quarantined")
    for rule in rotate.RULES:
        rot.add_argument("--" + rule.replace("_", "-"), type=int, default=0)
    cho = sub.add_parser("choose", help="the archive a restore takes: newest received and verified (read-only)")
    cho.add_argument("--path", required=True, help="the source's directory on the backup host")
    cho.add_argument("--source", required=True)
    cho.add_argument("--archive", default="latest", help="latest, a day (YYYY-MM-DD) or an archive file name")
    cho.add_argument("--max-future-skew", type=int, default=3600,
                     help="seconds a name may be after its receive time before it is skipped")
    scr = sub.add_parser("scrub", help="re-hash every stored archive of every source; quarantine a mismatch")
    scr.add_argument("--path", required=True, help="the root of the archives on the backup host")
    scr.add_argument("--status-file", default=scrub.STATUS_FILE, help="where the outcome is written (JSON)")
    res = sub.add_parser("restore", help="verify and restore one archive")
    res.add_argument("--archive", required=True)
    res.add_argument("--sha256")
    res.add_argument("--target", default="/")
    res.add_argument("--dry-run", action="store_true")
    res.add_argument("--no-databases", action="store_true", help="do not load the database dumps")
    res.add_argument("--no-files", action="store_true", help="the database dumps only")
    res.add_argument("--path", action="append", default=[], help="restore only this path (repeatable)")
    res.add_argument("--report", help="file listing every applied entry (default: next to the archive)")
    res.add_argument("--identity-stdin", action="store_true",
                     help="read the age identity (private key) that decrypts a NAME.age archive from standard input")
    return top


def main(argv=None, out=sys.stdout):
    args = parser().parse_args(argv)
    try:
        if args.command == "run":
            return run(load_config(args.config), out, cron=args.cron)
        if args.command == "rotate":
            policy = {rule: getattr(args, rule) for rule in rotate.RULES}
            result = rotate.rotate(args.path, policy, recurse=args.recurse, verify=not args.no_verify,
                                   check_mode=args.check, max_future_skew=args.max_future_skew)
        elif args.command == "scrub":
            result = scrub.scrub(args.path)
            os.makedirs(os.path.dirname(os.path.abspath(args.status_file)), exist_ok=True)
            atomic_write_text(args.status_file, json.dumps(result, sort_keys=True, indent=1) + "\n")
        elif args.command == "choose":
            result = rotate.choose(args.path, args.source, args.archive, max_future_skew=args.max_future_skew)
        else:
            identity = sys.stdin.buffer.read() if args.identity_stdin else None
            result = restore.restore(args.archive, sha256=args.sha256, target=args.target, dry_run=args.dry_run,
                                     databases=not args.no_databases, files=not args.no_files, paths=args.path,
                                     report=args.report, identity=identity)
    except BackupError as exc:
        sys.stderr.write(f"streamcloud-backup {args.command}: {exc}\n")
        return 1
    # ensure_ascii: every report line is ASCII, whatever the file names (printable() already made
    # undecodable bytes readable).
    out.write(json.dumps(result, sort_keys=True, ensure_ascii=True) + "\n")
    return EXIT_BAD if result.get("bad") else 0
