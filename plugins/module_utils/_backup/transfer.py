# Copyright: streamcloud platform engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ship archives to the backup host over SSH, verify them there, and only then free the outbox.

Each archive in the outbox has a ``.sha256`` sidecar written when it was made and tested. For
each archive not yet shipped, oldest first, one SSH session: ``put NAME SIZE SHA [SIG]`` (SIG, the
source's signature of an encrypted archive, as one base64 word; the archive streamed into
a temporary name on the far side, which then hashes what it stored and publishes it only if it
matches; "already" when an interrupted run had published it). Then a ``.shipped`` marker is
written, and shipped archives beyond the newest ``keep_local`` are deleted. An archive that was not
verified on the far side is never deleted; it is shipped on the next run.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess

from ansible_collections.streamcloud.platform.plugins.module_utils._backup.crypt import (
    pack_signature,
)
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.errors import BackupError
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.names import ARCHIVE_RE, SOURCE_RE
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.sidecars import (
    read_sidecar,
    sidecar_path,
    signature_path,
)

SSH_ERROR = 255
# What ssh itself prints when it cannot reach or log in to the host (exit 255). An exit 255 without
# one of these is the far side's program ending abnormally (sshd reports a killed receiver so).
SSH_CONNECT_ERRORS = ("ssh:", "connection refused", "connection timed out", "could not resolve", "no route to host",
                      "permission denied", "host key verification failed", "kex_exchange_identification",
                      "connection closed by", "connection reset by", "network is unreachable",
                      "timeout, server", "banner exchange")


class Unreachable(BackupError):
    """The backup host could not be reached or refused the login."""


# AES-GCM ahead of OpenSSH's default order (chacha20-poly1305 first), the rest of that order kept
# behind it ("^"): current EC2 processors (Intel, AMD, Graviton) have AES instructions, with which
# AES-GCM moves an archive with less CPU (benchmarks/RESULTS.md, backup); a server that allows
# neither still negotiates.
CIPHERS = "^aes128-gcm@openssh.com,aes256-gcm@openssh.com"


class Remote:
    """The receiver on the backup host, reached over ssh with a dedicated key."""

    def __init__(self, host, user, identity_file=None, port=22, known_hosts_file=None,
                 strict_host_key_checking="yes", connect_timeout=10, ssh_program="ssh"):
        if not host or any(c.isspace() for c in host):
            raise BackupError(f"host {host!r} is not a host name or address")
        if not user or not SOURCE_RE.match(user):
            raise BackupError(f"user {user!r} is not a valid account name for the backup host")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise BackupError(f"port {port!r} must be 1-65535")
        if strict_host_key_checking not in ("yes", "accept-new", "no"):
            raise BackupError(f"strict_host_key_checking {strict_host_key_checking!r}: use yes, accept-new or no")
        if identity_file is not None and not os.path.isfile(identity_file):
            raise BackupError(f"identity_file {identity_file} does not exist: the dedicated backup key is missing")
        if not isinstance(connect_timeout, int) or connect_timeout <= 0:
            raise BackupError(f"connect_timeout {connect_timeout!r} must be a positive number of seconds")
        self.host = host
        argv = [ssh_program, "-T", "-p", str(port),
                "-o", "BatchMode=yes", "-o", f"ConnectTimeout={connect_timeout}",
                "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4",
                "-o", f"StrictHostKeyChecking={strict_host_key_checking}",
                "-o", f"Ciphers={CIPHERS}"]
        if identity_file:
            argv += ["-i", identity_file, "-o", "IdentitiesOnly=yes"]
        if known_hosts_file:
            argv += ["-o", f"UserKnownHostsFile={known_hosts_file}"]
        self.argv = [*argv, f"{user}@{host}"]

    def call(self, command, stdin=None):
        result = subprocess.run([*self.argv, command], stdin=stdin, capture_output=True,  # noqa: S603 - argv list, no shell
                                check=False)
        err = result.stderr.decode(errors="replace").strip()
        if result.returncode == SSH_ERROR:
            if any(marker in err.lower() for marker in SSH_CONNECT_ERRORS):
                raise Unreachable(f"backup host {self.host} unreachable or login refused: {err}")
            raise BackupError(f"backup host {self.host}: the receiver stopped without an answer to "
                              f"{command.split()[0]} (killed, or it crashed){': ' + err if err else ''}; "
                              "nothing partial is published there, and the archive is sent again next run")
        if result.returncode != 0:
            raise BackupError(err.replace("streamcloud-backup-receive: ", "backup host: ")
                              or f"backup host: {command.split()[0]} failed with exit code {result.returncode}")
        try:
            return json.loads(result.stdout.decode())
        except ValueError as exc:
            raise BackupError(f"backup host: unexpected answer to {command.split()[0]}: "
                              f"{result.stdout[:200]!r}") from exc


def pending(outbox):
    """Archives in the outbox, oldest first: (name, shipped?)."""
    if not os.path.isdir(outbox):
        raise BackupError(f"outbox {outbox} is not a directory")
    out = []
    for entry in sorted(os.listdir(outbox), key=_stamp_key):
        path = os.path.join(outbox, entry)
        if ARCHIVE_RE.match(entry) and os.path.isfile(path) and os.path.isfile(sidecar_path(path)):
            out.append((entry, os.path.exists(path + ".shipped")))
    return out


def _stamp_key(name):
    match = ARCHIVE_RE.match(name)
    return (match.group("stamp"), name) if match else ("", name)


def ship_one(remote, path):
    name = os.path.basename(path)
    sha256 = read_sidecar(path)
    if sha256 is None:
        raise BackupError(f"{path} has no .sha256 sidecar: it was never declared good, so it is not shipped")
    size = os.path.getsize(path)
    command = f"put {name} {size} {sha256}"
    if os.path.isfile(signature_path(path)):
        with open(signature_path(path), encoding="ascii") as handle:
            command += " " + pack_signature(handle.read())
    # One session: the far side stores under a temporary name, hashes what it stored and publishes
    # it only if it matches (or answers "already" when an interrupted run had published it).
    with open(path, "rb") as handle:
        done = remote.call(command, stdin=handle)
    return {"name": name, "sha256": sha256, "size": done.get("size"), "already": done.get("already", False)}


def transfer(options, outbox, only=None, check_mode=False):
    """ship() with the options as the module and the cron configuration name them (options.TRANSFER)."""
    remote = Remote(host=options["host"], user=options["user"], identity_file=options["identity_file"],
                    port=options["port"], known_hosts_file=options["known_hosts_file"],
                    strict_host_key_checking=options["strict_host_key_checking"],
                    connect_timeout=options["connect_timeout"])
    return ship(outbox, remote, keep_local=options["keep_local"], check_mode=check_mode, only=only)


def ship(outbox, remote, keep_local=0, check_mode=False, only=None):
    """Ships every unshipped archive (or only ``only``), then applies ``keep_local``."""
    if not isinstance(keep_local, int) or isinstance(keep_local, bool) or keep_local < 0:
        raise BackupError(f"keep_local {keep_local!r} must be 0 or a positive number of local copies")
    archives = pending(outbox)
    if only is not None and only not in {name for name, _shipped in archives}:
        raise BackupError(f"{os.path.join(outbox, only)} is not a finished archive (no such file or no .sha256)")
    todo = [name for name, shipped in archives if not shipped and (only is None or name == only)]
    result = {"transferred": [], "failed": [], "deleted_local": [], "kept_local": [], "pending": [],
              "changed": False}
    if check_mode:
        result["pending"] = todo
        shipped = [name for name, done in archives if done] + todo
        result["deleted_local"] = shipped[:-keep_local] if keep_local else shipped
        result["changed"] = bool(todo or result["deleted_local"])
        return result
    for name in todo:
        path = os.path.join(outbox, name)
        try:
            info = ship_one(remote, path)
        except Unreachable as exc:
            result["failed"].append({"name": name, "error": str(exc)})
            result["pending"] = todo[todo.index(name):]
            break
        except BackupError as exc:
            result["failed"].append({"name": name, "error": str(exc)})
            result["pending"].append(name)
            continue
        with open(path + ".shipped", "w", encoding="ascii") as marker:
            marker.write(info["sha256"] + "\n")
        result["transferred"].append(info)
        result["changed"] = True
    shipped = [name for name, done in pending(outbox) if done]
    doomed = shipped[:-keep_local] if keep_local else shipped
    for name in doomed:
        path = os.path.join(outbox, name)
        for victim in (path, sidecar_path(path), signature_path(path), path + ".shipped"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(victim)
        result["deleted_local"].append(name)
        result["changed"] = True
    result["kept_local"] = [name for name, _shipped in pending(outbox)]
    return result
