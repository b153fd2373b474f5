# Copyright: streamcloud platform engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Database dumps through the commands a database role publishes; the dump directory's safety.

The backup has no dump or restore code of its own. A database role (``postgresql``) installs
its commands and publishes them in a small JSON file (``/etc/streamcloud/database-hooks.json``:
``{"engine": "postgresql", "dump": "/usr/local/sbin/streamcloud-pg-dump",
"restore": "/usr/local/sbin/streamcloud-pg-restore"}``). ``dump DIR`` writes the dumps into DIR,
``restore DIR`` loads them.

Each dump goes to a fresh directory next to ``dump_dir``; the previous dump is replaced only
after the new one succeeded, and ``dump_dir`` itself is checked before anything is removed.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import tempfile

from ansible_collections.streamcloud.platform.plugins.module_utils._backup.errors import BackupError
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.names import printable

HOOKS_FILE = "/etc/streamcloud/database-hooks.json"
MARKER = ".streamcloud-dump"
# What a dump directory may hold besides the marker (what the dump commands write).
DUMP_FILE_SUFFIXES = (".dump", ".sql", ".properties")
DUMP_FILE_NAMES = ("SHA256SUMS",)
# /tmp and /var/tmp are in this list to be refused, never written to.
SYSTEM_DIRS = (
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/media", "/mnt",
    "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/usr/local", "/var",  # noqa: S108
    "/var/backups", "/var/cache", "/var/lib", "/var/local", "/var/log", "/var/mail", "/var/opt", "/var/spool",
    "/var/tmp", "/var/backups/streamcloud",  # noqa: S108
)


def read_hooks(hooks_file=HOOKS_FILE):
    """The published hooks ({'engine', 'dump', 'restore'}), or None when no role published any."""
    try:
        with open(hooks_file, encoding="utf-8") as handle:
            hooks = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise BackupError(f"{hooks_file}: cannot read the published database commands: {exc}") from exc
    if not isinstance(hooks, dict) or not all(isinstance(hooks.get(k), str) and hooks[k].startswith("/")
                                              for k in ("dump", "restore")):
        raise BackupError(f"{hooks_file}: 'dump' and 'restore' must be absolute paths of commands; "
                          "re-apply the database role that wrote it")
    return hooks


def resolve_dump_command(setting, hooks_file=HOOKS_FILE):
    """The dump argv (the dump directory is appended), or None.

    ``''``/``none``: no dumps. ``auto``: the command the database role published, if any.
    Anything else: a command line.
    """
    setting = (setting or "").strip()
    if setting in ("", "none"):
        return None
    if setting == "auto":
        hooks = read_hooks(hooks_file)
        return [hooks["dump"]] if hooks else None
    return shlex.split(setting) or None


def resolve_restore_command(hooks_file=HOOKS_FILE):
    hooks = read_hooks(hooks_file)
    if hooks is None:
        raise BackupError(f"this host publishes no database restore command ({hooks_file} is missing): apply the "
                          "postgresql role first, or restore with databases disabled")
    return [hooks["restore"]]


def _overlaps(a, b):
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


def check_dump_dir(dump_dir, outbox, paths):
    """Refuses a dump_dir whose replacement could delete anything but an earlier dump."""
    if not isinstance(dump_dir, str) or not dump_dir.startswith("/"):
        raise BackupError(f"dump_dir {dump_dir!r} is not an absolute path")
    normal = os.path.normpath(dump_dir)
    if os.path.islink(normal):
        raise BackupError(f"dump_dir {normal} is a symbolic link: give the real directory")
    real = os.path.realpath(normal)
    if normal in SYSTEM_DIRS or real in SYSTEM_DIRS or any(d.startswith(real.rstrip("/") + "/") for d in SYSTEM_DIRS):
        raise BackupError(f"dump_dir {normal} is a system directory (or holds one): give a directory of its own, "
                          "such as /var/backups/streamcloud/db")
    for other in [os.path.realpath(outbox)]:
        if _overlaps(real, other):
            raise BackupError(f"dump_dir {normal} overlaps the outbox {outbox}: the unshipped archives would be "
                              "deleted; give a separate directory")
    for path in paths:
        if _overlaps(real, os.path.realpath(path)):
            raise BackupError(f"dump_dir {normal} overlaps the backed-up path {path}: its files would be deleted; "
                              "give a directory outside backup_paths (the dumps are archived anyway)")
    if os.path.lexists(normal):
        if not os.path.isdir(normal):
            raise BackupError(f"dump_dir {normal} exists and is not a directory")
        strangers = [n for n in os.listdir(normal) if not _is_dump_file(n)]
        if strangers and MARKER not in os.listdir(normal):
            raise BackupError(f"dump_dir {normal} holds files no dump wrote ({printable(', '.join(strangers[:3]))}): "
                              "give an empty or a new directory")
    return normal


def _is_dump_file(name):
    return name == MARKER or name in DUMP_FILE_NAMES or name.endswith(DUMP_FILE_SUFFIXES)


def run_dumps(command, dump_dir, outbox, paths):
    """Runs the dump command into a fresh directory, then puts it in place of the previous dump.

    Returns the file names it produced. On failure the previous dump is left as it was.
    """
    dump_dir = check_dump_dir(dump_dir, outbox, paths)
    parent = os.path.dirname(dump_dir)
    os.makedirs(parent, mode=0o700, exist_ok=True)
    fresh = tempfile.mkdtemp(prefix=os.path.basename(dump_dir) + ".new-", dir=parent)
    try:
        with open(os.path.join(fresh, MARKER), "w", encoding="utf-8") as handle:
            handle.write("made by streamcloud-backup; replaced by each run\n")
        try:
            result = subprocess.run([*command, fresh], capture_output=True, text=True, check=False)  # noqa: S603 - argv list, no shell
        except OSError as exc:
            raise BackupError(f"database dump command {command[0]!r} cannot run: {exc}") from exc
        if result.returncode != 0:
            raise BackupError(
                f"database dump command {' '.join(command)} failed with exit code {result.returncode}: "
                f"{result.stderr.strip()[-500:]}; no archive was made, the previous dump is kept"
            )
        files = sorted(n for n in os.listdir(fresh) if n != MARKER)
        if not files:
            raise BackupError(f"database dump command {' '.join(command)} wrote nothing; no archive was made")
        previous = None
        if os.path.lexists(dump_dir):
            previous = fresh.replace(".new-", ".old-")
            os.rename(dump_dir, previous)
        os.rename(fresh, dump_dir)
        if previous:
            shutil.rmtree(previous)
        return files
    finally:
        if os.path.lexists(fresh):
            shutil.rmtree(fresh)


def restore_dumps(directory, command=None, hooks_file=HOOKS_FILE):
    """Loads the dumps in ``directory`` with the published restore command; returns its report."""
    argv = command or resolve_restore_command(hooks_file)
    try:
        result = subprocess.run([*argv, directory], capture_output=True, text=True, check=False)  # noqa: S603 - argv list, no shell
    except OSError as exc:
        raise BackupError(f"database restore command {argv[0]!r} cannot run: {exc}") from exc
    if result.returncode != 0:
        raise BackupError(f"database restore ({' '.join(argv)} {directory}) failed with exit code "
                          f"{result.returncode}: {result.stderr.strip()[-800:]}; the live databases are unchanged")
    return [line for line in result.stdout.splitlines() if line.strip()]
