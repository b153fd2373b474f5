# Copyright: streamcloud platform engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Encryption and signing at the source, with the maintained tools: age and OpenSSH's ssh-keygen.

An archive is encrypted with ``age`` to the recipients (public keys; the private key is on no
platform host) in the stream that writes it (archive.py), as ``NAME.age``; the source signs one
line, ``"NAME.age SHA256\\n"`` (the ciphertext's name and hash), with its own SSH key
(``ssh-keygen -Y sign``, namespace ``streamcloud-backup``) in ``NAME.age.sig``. The backup host
stores and verifies the ciphertext's hash without any key. At restore, the controller checks the
signature against the sources' public keys (an allowed-signers file) before anything is applied, so
an archive rewritten on the backup host with a matching ``.sha256`` is refused; then the target
decrypts with the identity from the vault (given on standard input, never written to disk). age
authenticates what it decrypts.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import re
import shutil
import subprocess

from ansible_collections.streamcloud.platform.plugins.module_utils._backup.errors import BackupError

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


def age_argv(recipients) -> list:
    """age's command line that encrypts standard input to the recipients (checked)."""
    keys = check_recipients(recipients)
    _need("age")
    return ["age", "--encrypt"] + [word for key in keys for word in ("--recipient", key)]


def _need(program):
    if shutil.which(program) is None:
        raise BackupError(f"{program} is not installed on this host (the backup role installs it)")


def check_sign_key(key) -> str:
    """The key that signs encrypted archives, checked before anything is written."""
    if not key or not os.path.isfile(key):
        raise BackupError(f"sign_key {key or '(not set)'} does not exist: an encrypted archive is signed with the "
                          "source's own SSH key (variable backup_sign_key)")
    _need("ssh-keygen")
    return key


def sign(name: str, sha256: str, key: str) -> str:
    """The armored SSH signature of statement(name, sha256) made with the private key ``key``."""
    done = subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-f", key, "-n", NAMESPACE],  # noqa: S603, S607 - argv list
                          input=statement(name, sha256), capture_output=True, check=False)
    text = done.stdout.decode("ascii", errors="replace")
    if done.returncode != 0 or not text.startswith(SIGNATURE_BEGIN):
        raise BackupError(f"ssh-keygen -Y sign with {key} failed (check backup_sign_key): "
                          f"{done.stderr.decode(errors='replace').strip()}")
    return text


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
