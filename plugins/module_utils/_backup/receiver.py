# Copyright: streamcloud platform engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The receiving side on the backup host: the login shell of each source host's account.

sshd runs ``<shell> -c "<command>"``; the shell is this receiver, so the account has no shell at
all. It serves only its own directory (the account's home, named after the source host) and only this
command:

  put NAME SIZE SHA [SIG]  read exactly SIZE bytes from stdin into .incoming/NAME.part, hash what was
                    stored on disk and, if it matches SHA, publish it as NAME with its sidecars (a hard
                    link, never over an existing name); if not, delete it. SIG is the source's signature
                    (base64), stored as NAME.sig: required for a NAME.age

Every answer is one JSON line on stdout; every refusal a message on stderr and a non-zero exit.

The backup host decides, as an append-only store does: the account fixes the source (an archive
named after another source is refused), the receiver records when it received each archive in a
``NAME.received`` sidecar that rotation dates it by, refuses a name dated more than
``max_future_skew`` seconds after its own clock, and never deletes, replaces or renames a published
archive on a client's request (only the backup host's own scrub and rotation, as root, quarantine
one whose hash no longer matches). A quota per source (``quota_mb``, ``quota_mb_by_source``; 0 is none) is
checked against the size ``put`` announces before a byte is written. One upload per name at a
time: ``.incoming/NAME.lock``; a ``.part`` whose lock nobody holds is what a killed receiver left,
and the next ``put`` deletes it. Settings come from the root-owned
``/etc/streamcloud-backup-receiver.json`` that the role writes.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import pwd
import signal
import sys

from ansible_collections.streamcloud.platform.plugins.module_utils._backup.crypt import (
    SUFFIX,
    unpack_signature,
)
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.errors import BackupError
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.files import (
    CHUNK,
    atomic_write_text,
    fsync_dir,
    sha256_file,
)
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.names import (
    ARCHIVE_RE,
    parse_archive_name,
    utcnow,
)
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.sidecars import (
    SHA256_RE,
    read_sidecar,
    sidecars,
    signature_path,
    write_received,
    write_sidecar,
)

EXIT_REFUSED = 2
EXIT_MISMATCH = 3
EXIT_NO_SPACE = 4
EXIT_QUOTA = 5
INCOMING = ".incoming"
CONFIG = "/etc/streamcloud-backup-receiver.json"
DEFAULT_SETTINGS = {"max_future_skew": 3600, "quota_mb": 0, "quota_mb_by_source": {}}
MIB = 1024 * 1024


class Refused(BackupError):
    def __init__(self, message, code=EXIT_REFUSED):
        super().__init__(message)
        self.code = code


def _name(value, source=None):
    if not ARCHIVE_RE.match(value or "") or "/" in value:
        raise Refused(f"{value!r} is not an archive name (<source>-<YYYYmmddTHHMMSSZ>.tar.gz|.tar.zst[.age])")
    if source is not None and ARCHIVE_RE.match(value).group("source") != source:
        raise Refused(f"{value}: this account receives the archives of {source} only")
    return value


def _not_in_future(name, max_skew, now=None):
    """Refuses a name dated more than max_skew seconds after the backup host's clock."""
    when = parse_archive_name(name)[1]
    now = now or utcnow()
    if when > now + datetime.timedelta(seconds=max_skew):
        raise Refused(f"{name} is dated {when:%Y-%m-%d %H:%M:%S} UTC, more than {max_skew} s after the backup host's "
                      f"clock ({now:%Y-%m-%d %H:%M:%S} UTC): fix the source host's clock (NTP); the backup host "
                      "accepts no archive from the future (max_future_skew in /etc/streamcloud-backup-receiver.json, "
                      "variable backup_server_max_future_skew)")


def _usage(base):
    """Bytes this source holds on the backup host: every regular file in its directory and in
    .incoming and .quarantine below it (archives, sidecars, partial uploads)."""
    total = 0
    for directory in (base, os.path.join(base, INCOMING), os.path.join(base, ".quarantine")):
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(directory):
                if entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
    return total


def _within_quota(base, name, size, settings):
    """Refuses an upload whose announced size would take the source over its quota (checked before
    a byte is written; the lock of the name is held, and _sweep already removed dead partials)."""
    source = settings["source"]
    overrides = settings.get("quota_mb_by_source") or {}
    quota_mb = overrides.get(source, settings.get("quota_mb") or 0)
    if not quota_mb:
        return
    used = _usage(base)
    if used + size > quota_mb * MIB:
        variable = (f"backup_server_quota_mb_by_source['{source}']" if source in overrides
                    else "backup_server_quota_mb (or backup_server_quota_mb_by_source for this source)")
        raise Refused(f"quota: {name} ({size} bytes) would take {source} over its quota of {quota_mb} MiB on the "
                      f"backup host ({used / MIB:.1f} MiB used); nothing was written. Free space (rotation, "
                      f"quarantine) or raise {variable}", EXIT_QUOTA)


@contextlib.contextmanager
def _upload_lock(base, name):
    """One upload per archive name: an exclusive lock on .incoming/NAME.lock, refused when held."""
    incoming = os.path.join(base, INCOMING)
    os.makedirs(incoming, mode=0o700, exist_ok=True)
    handle = _try_lock(os.path.join(incoming, name + ".lock"))
    if handle is None:
        raise Refused(f"another upload of {name} is in progress on the backup host; this one was refused "
                      "(the next run sends it again if it is still missing)")
    try:
        _sweep(incoming, name)
        yield os.path.join(incoming, name + ".part")
    finally:
        _unlink(os.path.join(incoming, name + ".lock"))
        handle.close()


def _try_lock(path):
    """The open, locked lock file, or None when a live process holds it."""
    handle = open(path, "a")  # noqa: SIM115 - held until the upload ends
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    try:
        current = os.stat(path).st_ino
    except FileNotFoundError:
        current = None
    if current != os.fstat(handle.fileno()).st_ino:
        # The holder finished and removed it between our open and our lock: someone may hold the new one.
        handle.close()
        return None
    return handle


def _sweep(incoming, busy):
    """Deletes what a killed receiver left in .incoming: files of names whose lock no process holds."""
    for entry in os.listdir(incoming):
        stem = entry.rsplit(".", 1)[0]
        if not entry.endswith((".part", ".lock")) or stem == busy:
            continue
        handle = _try_lock(os.path.join(incoming, stem + ".lock"))
        if handle is None:
            continue
        with handle:
            _unlink(os.path.join(incoming, stem + ".part"))
            _unlink(os.path.join(incoming, stem + ".lock"))


def put(base, name, size, stdin, sha256, settings=None, signature=None):
    settings = _settings(base, settings)
    final = os.path.join(base, _name(name, settings["source"]))
    if not size.isdigit():
        raise Refused(f"put: size {size!r} is not a byte count")
    if not SHA256_RE.match(sha256):
        raise Refused(f"put: {sha256!r} is not a SHA-256 checksum")
    if signature is not None:
        try:
            signature = unpack_signature(signature)
        except BackupError as exc:
            raise Refused(f"put {name}: {exc}") from exc
    if os.path.exists(final):
        if read_sidecar(final) == sha256:
            return {"name": name, "sha256": sha256, "size": os.path.getsize(final), "already": True}
        raise Refused(f"{name} is already published; it is never overwritten")
    if name.endswith(SUFFIX) and signature is None:
        raise Refused(f"put {name}: an encrypted archive is accepted only with the source's signature "
                      "(put NAME SIZE SHA SIG)")
    _not_in_future(name, settings["max_future_skew"])
    with _upload_lock(base, name) as part:
        _within_quota(base, name, int(size), settings)
        _receive(base, name, part, int(size), stdin)
        return _publish(base, name, sha256, part, signature)


def _receive(base, name, part, expected, stdin):
    """Reads exactly ``expected`` bytes into ``part``. Nothing is kept on failure."""
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


def _publish(base, name, sha256, part, signature=None):
    """Under the name's lock: hash the part from disk, then publish it with its sidecars, never over
    an archive that exists (a hard link fails when the name is taken)."""
    final = os.path.join(base, name)
    actual = sha256_file(part)
    if actual != sha256:
        _unlink(part)
        raise Refused(f"checksum mismatch for {name}: the sender announced {sha256}, the backup host read "
                      f"{actual}; the received file was deleted and nothing was published", EXIT_MISMATCH)
    if os.path.exists(final):
        _unlink(part)
        raise Refused(f"{name} is already published; it is never overwritten")
    try:
        write_sidecar(final, sha256)
        write_received(final, utcnow(), sha256, os.path.getsize(part))
        if signature is not None:
            atomic_write_text(signature_path(final), signature, mode=0o600)
        os.link(part, final)
        os.unlink(part)
        fsync_dir(base)
    except OSError as exc:
        _unlink(part)
        if not os.path.exists(final):
            for extra in sidecars(final):
                _unlink(extra)
        code = EXIT_NO_SPACE if exc.errno in (errno.ENOSPC, errno.EDQUOT) else EXIT_REFUSED
        raise Refused(f"put {name}: {exc}", code) from exc
    return {"name": name, "sha256": sha256, "size": os.path.getsize(final), "already": False}


def _unlink(path):
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _settings(base, settings):
    merged = dict(DEFAULT_SETTINGS, **(settings or {}))
    merged.setdefault("source", os.path.basename(os.path.normpath(base)))
    return merged


def load_settings(path=CONFIG):
    """The receiver's settings from the root-owned file the role writes (defaults when absent)."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return dict(DEFAULT_SETTINGS)
    except (OSError, ValueError) as exc:
        raise BackupError(f"cannot read the receiver settings {path}: {exc}") from exc
    settings = dict(DEFAULT_SETTINGS)
    for key in ("max_future_skew", "quota_mb"):
        value = data.get(key, DEFAULT_SETTINGS[key])
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise BackupError(f"{path}: {key} {value!r} must be 0 or a positive whole number")
        settings[key] = value
    by_source = data.get("quota_mb_by_source", {})
    if not isinstance(by_source, dict) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                                  for v in by_source.values()):
        raise BackupError(f"{path}: quota_mb_by_source must map source names to 0 or a number of MiB")
    settings["quota_mb_by_source"] = by_source
    return settings


def dispatch(base, words, stdin, settings=None):
    settings = _settings(base, settings)
    command, args = (words[0], words[1:]) if words else ("", [])
    table = {
        "put": ((3, 4), lambda: put(base, args[0], args[1], stdin, args[2], settings, *args[3:])),
    }
    if command not in table:
        raise Refused(f"{command!r} is not allowed: this account only receives backups (put)")
    counts, call = table[command]
    if len(args) not in counts:
        raise Refused(f"{command} takes {' or '.join(map(str, counts))} argument(s), got {len(args)}")
    return call()


def _interrupted(signum, frame):
    raise Refused(f"interrupted by signal {signum}; nothing partial was kept")


def main(argv=None, base=None, handle_signals=True, settings=None):
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
        answer = dispatch(base, words, sys.stdin.buffer,
                          load_settings() if settings is None else settings)
    except Refused as exc:
        sys.stderr.write(f"streamcloud-backup-receive: {exc}\n")
        return exc.code
    except BackupError as exc:
        sys.stderr.write(f"streamcloud-backup-receive: {exc}\n")
        return EXIT_REFUSED
    sys.stdout.write(json.dumps(answer, sort_keys=True) + "\n")
    return 0
