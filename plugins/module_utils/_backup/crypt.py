# Copyright: streamcloud platform engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Encryption and signing at the source, with the maintained tools: age and OpenSSH's ssh-keygen.

A finished archive is encrypted with ``age`` to the recipients (public keys; the private key is
on no platform host) as ``NAME.age``, and the source signs one line, ``"NAME.age SHA256\\n"`` (the
ciphertext's name and hash), with its own SSH key (``ssh-keygen -Y sign``, namespace
``streamcloud-backup``) in ``NAME.age.sig``. The backup host stores and verifies the ciphertext's
hash without any key. At restore, the controller checks the signature against the sources' public
keys (an allowed-signers file) before anything is applied, so an archive rewritten on the backup
host with a matching ``.sha256`` is refused; then the target decrypts with the identity from the
vault (given on standard input, never written to disk). age authenticates what it decrypts.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import os
import re
import shutil
import subprocess

from ansible_collections.streamcloud.platform.plugins.module_utils._backup.errors import BackupError
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.files import (
    atomic_write_text,
    copy_hashed,
    fsync_dir,
)
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.sidecars import (
    sidecar_path,
    signature_path,
    write_sidecar,
)

NAMESPACE = "streamcloud-backup"
SUFFIX = ".age"
# An age X25519 recipient (bech32) or an SSH public key age accepts (a comment after it is dropped).
RECIPIENT_RE = re.compile(r"^(?P<key>age1[02-9ac-hj-np-z]{58}|(ssh-ed25519|ssh-rsa) [A-Za-z0-9+/]+={0,2})( [^\n]*)?\Z")
SIGNATURE_BEGIN = "-----BEGIN SSH SIGNATURE-----"
MAX_SIGNATURE = 4096


def statement(name: str, sha256: str) -> bytes:
    """What the source signs: the stored file's name and SHA-256, one line."""
    return f"{name} {sha256}\n".encode("ascii")


def check_recipients(recipients) -> list:
    if not isinstance(recipients, (list, tuple)) or not recipients:
        raise BackupError("recipients is empty: give the age public keys (age1...) the archives are encrypted to "
                          "(variable backup_age_recipients)")
    bad = [r for r in recipients if not isinstance(r, str) or not RECIPIENT_RE.match(r.strip())]
    if bad:
        raise BackupError(f"recipients: {bad[0]!r} is not an age public key (age1...) or an ssh-ed25519/ssh-rsa "
                          "public key (variable backup_age_recipients)")
    return [RECIPIENT_RE.match(r.strip()).group("key") for r in recipients]


def _need(program):
    if shutil.which(program) is None:
        raise BackupError(f"{program} is not installed on this host (the backup role installs it)")


def sign(name: str, sha256: str, key: str) -> str:
    """The armored SSH signature of statement(name, sha256) made with the private key ``key``."""
    _need("ssh-keygen")
    if not os.path.isfile(key):
        raise BackupError(f"sign_key {key} does not exist: the source signs its archives with its own SSH key "
                          "(variable backup_sign_key)")
    done = subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-f", key, "-n", NAMESPACE],  # noqa: S603, S607 - argv list
                          input=statement(name, sha256), capture_output=True, check=False)
    text = done.stdout.decode("ascii", errors="replace")
    if done.returncode != 0 or not text.startswith(SIGNATURE_BEGIN):
        raise BackupError(f"ssh-keygen -Y sign with {key} failed: {done.stderr.decode(errors='replace').strip()}")
    return text


def seal(plain: str, final: str, recipients, sign_key: str) -> dict:
    """Encrypts the finished archive ``plain`` (with its .sha256) to ``final`` (``NAME.age``), writes
    the ciphertext's .sha256 and .sig, then deletes the plaintext and its sidecar. Nothing is left
    half done: the ciphertext is written to a locked ``.part`` (what remove_leftovers() deletes when
    a run was killed) and renamed only once it is complete, hashed and signed."""
    recipients = check_recipients(recipients)
    _need("age")
    part = final + ".part"
    name = os.path.basename(final)
    argv = ["age", "--encrypt"]
    for recipient in recipients:
        argv += ["--recipient", recipient]
    try:
        with open(part, "xb") as out:
            fcntl.flock(out, fcntl.LOCK_EX | fcntl.LOCK_NB)
            with open(plain, "rb") as source:
                proc = subprocess.Popen(argv, stdin=source, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # noqa: S603 - argv list
                sha256, size = copy_hashed(proc.stdout, out)
                err = proc.stderr.read().decode(errors="replace").strip()
                proc.stdout.close()
                proc.stderr.close()
                if proc.wait() != 0:
                    raise BackupError(f"age could not encrypt {os.path.basename(plain)}: {err}")
            out.flush()
            os.fsync(out.fileno())
        atomic_write_text(signature_path(final), sign(name, sha256, sign_key), mode=0o600)
        os.replace(part, final)
        write_sidecar(final, sha256)
    except BaseException:
        for leftover in (part, signature_path(final)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)
        raise
    for victim in (plain, sidecar_path(plain)):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(victim)
    fsync_dir(os.path.dirname(os.path.abspath(final)))
    return {"archive": final, "name": name, "sha256": sha256, "size": size, "encrypted": True}


def pack_signature(text: str) -> str:
    """The signature as one word for the receiver's command line."""
    return base64.b64encode(text.encode("ascii")).decode("ascii")


def unpack_signature(word: str) -> str:
    """The signature a ``put`` carried; refused unless it is an armored SSH signature of sane size."""
    if not isinstance(word, str) or len(word) > MAX_SIGNATURE or not re.match(r"^[A-Za-z0-9+/]+={0,2}\Z", word):
        raise BackupError("the signature is not a base64 word of at most 4096 characters")
    try:
        text = base64.b64decode(word, validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise BackupError(f"the signature is not base64 text: {exc}") from exc
    if not text.startswith(SIGNATURE_BEGIN) or not text.rstrip().endswith("-----END SSH SIGNATURE-----"):
        raise BackupError("the signature is not an SSH signature (ssh-keygen -Y sign)")
    return text


def decrypt(cipher: str, identity: bytes, out: str) -> None:
    """Decrypts ``cipher`` to ``out`` (mode 0600) with the age identity given as bytes (passed to age
    on its standard input). A wrong or missing identity, or a modified ciphertext, is an error."""
    _need("age")
    if not identity or not identity.strip():
        raise BackupError(f"{os.path.basename(cipher)} is encrypted and no age identity was given: pass the private "
                          "key from the vault (vault_backup_age_identity, backup_restore_age_identity); nothing was "
                          "restored")
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.close(fd)
    done = subprocess.run(["age", "--decrypt", "--identity", "-", "--output", out, cipher],  # noqa: S603, S607 - argv list
                          input=identity, capture_output=True, check=False)
    if done.returncode != 0:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(out)
        why = (done.stderr.decode(errors="replace").strip().splitlines() or ["age failed"])[0]
        raise BackupError(f"{os.path.basename(cipher)} cannot be decrypted with the given identity ({why}); "
                          "nothing was restored")
