# Copyright: streamcloud platform engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The receiving side on the backup host: the login shell of each source host's account.

sshd runs ``<shell> -c "<command>"``; the shell is this receiver, so the account has no shell at
all. It serves only its own directory (the account's home) and only these commands:

  put NAME SIZE [SHA]  read exactly SIZE bytes from stdin into .incoming/NAME.part; with SHA,
                    commit it in the same session (one connection per archive)
  commit NAME SHA   hash .incoming/NAME.part from disk; if it matches, publish it as NAME with a
                    NAME.sha256 sidecar (atomic rename); if not, delete the partial file
  stat NAME         whether NAME is published, its size and recorded checksum
  verify NAME       hash the published NAME again and compare it with its sidecar
  list              the published archives
  get NAME          write the published NAME to stdout (restore)

Every answer is one JSON line on stdout; every refusal a message on stderr and a non-zero exit.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import pwd
import shutil
import signal
import sys

from ansible_collections.streamcloud.platform.plugins.module_utils.backup_common import (
    ARCHIVE_RE,
    CHUNK,
    SHA256_RE,
    BackupError,
    fsync_dir,
    read_sidecar,
    sha256_file,
    sidecar_path,
    write_sidecar,
)

EXIT_REFUSED = 2
EXIT_MISMATCH = 3
EXIT_NO_SPACE = 4
INCOMING = ".incoming"


class Refused(BackupError):
    def __init__(self, message, code=EXIT_REFUSED):
        super().__init__(message)
        self.code = code


def _name(value):
    if not ARCHIVE_RE.match(value or "") or "/" in value:
        raise Refused(f"{value!r} is not an archive name (<source>-<YYYYmmddTHHMMSSZ>.tar.gz|.tar.zst)")
    return value


def _published(base, name):
    path = os.path.join(base, _name(name))
    if not os.path.isfile(path):
        raise Refused(f"{name} is not on the backup host")
    return path


def put(base, name, size, stdin, sha256=None):
    final = os.path.join(base, _name(name))
    if not size.isdigit():
        raise Refused(f"put: size {size!r} is not a byte count")
    if sha256 is not None and not SHA256_RE.match(sha256):
        raise Refused(f"put: {sha256!r} is not a SHA-256 checksum")
    expected = int(size)
    if os.path.exists(final):
        if sha256 is not None and read_sidecar(final) == sha256:
            return {"name": name, "sha256": sha256, "size": os.path.getsize(final), "already": True}
        raise Refused(f"{name} is already published; it is never overwritten")
    incoming = os.path.join(base, INCOMING)
    os.makedirs(incoming, mode=0o700, exist_ok=True)
    part = os.path.join(incoming, name + ".part")
    digest = hashlib.sha256()
    received = 0
    try:
        with open(part, "wb") as out:
            while True:
                block = stdin.read(min(CHUNK, expected - received + 1))
                if not block:
                    break
                received += len(block)
                if received > expected:
                    raise Refused(f"put {name}: more than the announced {expected} bytes arrived")
                out.write(block)
                digest.update(block)
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        _unlink(part)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise Refused(f"the backup host is out of disk space in {base}: {name} was not accepted "
                          f"({received} of {expected} bytes written); free space or raise the quota",
                          EXIT_NO_SPACE) from exc
        raise Refused(f"put {name}: cannot write on the backup host: {exc}") from exc
    except BaseException:
        _unlink(part)
        raise
    if received != expected:
        _unlink(part)
        raise Refused(f"put {name}: the transfer stopped after {received} of {expected} bytes; "
                      "the partial file was deleted")
    if sha256 is not None:
        return commit(base, name, sha256)
    return {"name": name, "size": received, "sha256": digest.hexdigest()}


def commit(base, name, sha256):
    final = os.path.join(base, _name(name))
    if not SHA256_RE.match(sha256 or ""):
        raise Refused(f"commit: {sha256!r} is not a SHA-256 checksum")
    if os.path.exists(final):
        recorded = read_sidecar(final)
        if recorded == sha256:
            return {"name": name, "sha256": sha256, "size": os.path.getsize(final), "already": True}
        raise Refused(f"{name} is already published with another checksum; it is never overwritten")
    part = os.path.join(base, INCOMING, name + ".part")
    if not os.path.isfile(part):
        raise Refused(f"commit {name}: nothing was received under that name")
    actual = sha256_file(part)
    if actual != sha256:
        _unlink(part)
        raise Refused(f"checksum mismatch for {name}: the sender announced {sha256}, the backup host read "
                      f"{actual}; the received file was deleted and nothing was published", EXIT_MISMATCH)
    try:
        write_sidecar(final, sha256)
        os.replace(part, final)
        fsync_dir(base)
    except OSError as exc:
        _unlink(sidecar_path(final) if not os.path.exists(final) else part)
        code = EXIT_NO_SPACE if exc.errno in (errno.ENOSPC, errno.EDQUOT) else EXIT_REFUSED
        raise Refused(f"commit {name}: {exc}", code) from exc
    return {"name": name, "sha256": sha256, "size": os.path.getsize(final), "already": False}


def stat_archive(base, name):
    final = os.path.join(base, _name(name))
    if not os.path.isfile(final):
        return {"name": name, "exists": False}
    return {"name": name, "exists": True, "size": os.path.getsize(final), "sha256": read_sidecar(final)}


def verify(base, name):
    path = _published(base, name)
    recorded = read_sidecar(path)
    actual = sha256_file(path)
    return {"name": name, "sha256": recorded, "actual": actual, "ok": recorded == actual}


def listing(base):
    out = []
    for entry in sorted(os.listdir(base)):
        path = os.path.join(base, entry)
        if ARCHIVE_RE.match(entry) and os.path.isfile(path):
            out.append({"name": entry, "size": os.path.getsize(path), "sha256": read_sidecar(path)})
    return {"archives": out}


def get(base, name, stdout):
    path = _published(base, name)
    with open(path, "rb") as handle:
        shutil.copyfileobj(handle, stdout, CHUNK)
    stdout.flush()
    return None


def _unlink(path):
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def dispatch(base, words, stdin, stdout):
    if not words:
        raise Refused("no command: this account only receives backups (put, commit, stat, verify, list, get)")
    command, args = words[0], words[1:]
    table = {
        "put": ((2, 3), lambda: put(base, args[0], args[1], stdin, args[2] if len(args) == 3 else None)),
        "commit": (2, lambda: commit(base, args[0], args[1])),
        "stat": (1, lambda: stat_archive(base, args[0])),
        "verify": (1, lambda: verify(base, args[0])),
        "list": (0, lambda: listing(base)),
        "get": (1, lambda: get(base, args[0], stdout)),
    }
    if command not in table:
        raise Refused(f"{command!r} is not allowed: this account only receives backups "
                      "(put, commit, stat, verify, list, get)")
    counts, call = table[command]
    counts = counts if isinstance(counts, tuple) else (counts,)
    if len(args) not in counts:
        raise Refused(f"{command} takes {' or '.join(map(str, counts))} argument(s), got {len(args)}")
    return call()


def _interrupted(signum, frame):
    raise Refused(f"interrupted by signal {signum}; nothing partial was kept")


def main(argv=None, base=None, handle_signals=True):
    """Entry point when sshd runs the receiver as the account's shell: ``receiver -c 'command'``."""
    argv = sys.argv[1:] if argv is None else argv
    if base is None:
        base = pwd.getpwuid(os.getuid()).pw_dir
    os.umask(0o077)
    # A dropped connection (sshd sends SIGHUP) or a kill unwinds through the clean-up of put.
    for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGPIPE) if handle_signals else ():
        signal.signal(sig, _interrupted)
    if len(argv) != 2 or argv[0] != "-c":
        sys.stderr.write("streamcloud-backup-receive: interactive logins are refused: this account only receives "
                         "backups\n")
        return EXIT_REFUSED
    words = argv[1].split()
    if words and os.path.basename(words[0]) == "streamcloud-backup-receive":
        # Run through sshd's ForceCommand (which also catches the in-process internal-sftp
        # subsystem): the client's request is in SSH_ORIGINAL_COMMAND, set by sshd.
        words = os.environ.get("SSH_ORIGINAL_COMMAND", "").split()
    try:
        answer = dispatch(base, words, sys.stdin.buffer, sys.stdout.buffer)
    except Refused as exc:
        sys.stderr.write(f"streamcloud-backup-receive: {exc}\n")
        return exc.code
    except BackupError as exc:
        sys.stderr.write(f"streamcloud-backup-receive: {exc}\n")
        return EXIT_REFUSED
    if answer is not None:
        sys.stdout.write(json.dumps(answer, sort_keys=True) + "\n")
    return 0
