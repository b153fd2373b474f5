"""Encryption and signing at the source: real age, real ssh-keygen, the real receiver and restore."""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import io
import os
import shutil
import signal
import subprocess
import time

import pytest
from ansible_collections.streamcloud.platform.plugins.module_utils._backup import archive as ba
from ansible_collections.streamcloud.platform.plugins.module_utils._backup import crypt as bc
from ansible_collections.streamcloud.platform.plugins.module_utils._backup import receiver as rx
from ansible_collections.streamcloud.platform.plugins.module_utils._backup import restore as rs
from ansible_collections.streamcloud.platform.plugins.module_utils._backup import rotate as br
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.archive import (
    create_archive,
    remove_leftovers,
)
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.errors import BackupError
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.files import sha256_file
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.sidecars import quarantine, read_sidecar
from ansible_collections.streamcloud.platform.plugins.module_utils._backup.transfer import Remote, ship

pytestmark = pytest.mark.skipif(shutil.which("age") is None or shutil.which("ssh-keygen") is None,
                                reason="needs age and ssh-keygen (Debian packages age, openssh-client)")

WHEN = datetime.datetime(2026, 11, 27, 2, 0, tzinfo=datetime.timezone.utc)
NAME = "web1-20261127T020000Z.tar.gz.age"


def keypair(path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)], check=True)
    return str(path), path.with_suffix(".pub").read_text().strip()


@pytest.fixture
def keys(tmp_path):
    """The controller's key pair (recipient + identity) and the source's signing key."""
    (tmp_path / "keys").mkdir()
    identity, recipient = keypair(tmp_path / "keys" / "controller")
    sign_key, sign_pub = keypair(tmp_path / "keys" / "host")
    signers = tmp_path / "keys" / "allowed_signers"
    signers.write_text(f'web1 namespaces="{bc.NAMESPACE}" {sign_pub}\n')
    return {"identity": identity, "recipient": recipient, "sign_key": sign_key, "signers": str(signers)}


def verify_signature(signers, name, sha256, signature, principal="web1"):
    sig = signers + ".check.sig"
    with open(sig, "w", encoding="ascii") as handle:
        handle.write(signature)
    return subprocess.run(["ssh-keygen", "-Y", "verify", "-f", signers, "-I", principal, "-n", bc.NAMESPACE,
                           "-s", sig], input=bc.statement(name, sha256), capture_output=True, check=False).returncode


def sealed(tree, tmp_path, keys, **extra):
    return create_archive([str(tree)], str(tmp_path / "outbox"), "web1", now=WHEN,
                          recipients=[keys["recipient"]], sign_key=keys["sign_key"], **extra)


def test_an_archive_is_encrypted_signed_and_nothing_in_clear_is_left(tree, tmp_path, keys):
    made = sealed(tree, tmp_path, keys)
    assert made["name"] == "web1-20261127T020000Z.tar.gz.age" and made["encrypted"] is True
    outbox = tmp_path / "outbox"
    assert sorted(os.listdir(outbox)) == [made["name"], made["name"] + ".sha256", made["name"] + ".sig"]
    body = (outbox / made["name"]).read_bytes()
    assert body.startswith(b"age-encryption.org/v1")
    assert subprocess.run(["gzip", "-t"], input=body, capture_output=True, check=False).returncode != 0
    assert made["sha256"] == hashlib.sha256(body).hexdigest()
    assert read_sidecar(str(outbox / made["name"])) == made["sha256"]
    signature = (outbox / (made["name"] + ".sig")).read_text()
    assert verify_signature(keys["signers"], made["name"], made["sha256"], signature) == 0
    # The signature binds the name and the hash: another hash or another name does not verify.
    assert verify_signature(keys["signers"], made["name"], "0" * 64, signature) != 0
    assert verify_signature(keys["signers"], "web1-20261128T020000Z.tar.gz.age", made["sha256"], signature) != 0


def test_the_restore_decrypts_with_the_identity_and_gives_the_same_tree(tree, tmp_path, keys):
    before = {p: (tree / p).read_bytes() for p in ("etc/app.conf", "media/clip.bin")}
    made = sealed(tree, tmp_path, keys)
    shutil.rmtree(tree)
    with open(keys["identity"], "rb") as handle:
        identity = handle.read()
    result = rs.restore(made["archive"], target=str(tmp_path / "restored"), identity=identity)
    restored = tmp_path / "restored" / str(tree).lstrip("/")
    assert {p: (restored / p).read_bytes() for p in before} == before
    assert result["encrypted"] is True and result["archive"] == made["archive"]
    # The decrypted copy is deleted afterwards; the ciphertext stays as it was.
    assert sorted(os.listdir(tmp_path / "outbox")) == sorted(
        [made["name"], made["name"] + ".sha256", made["name"] + ".sig", made["name"][:-4] + ".applied"])


@pytest.mark.parametrize("identity", [None, b"", b"\n"])
def test_the_restore_without_an_identity_fails_clearly(tree, tmp_path, keys, identity):
    made = sealed(tree, tmp_path, keys)
    with pytest.raises(BackupError, match=r"is encrypted and no age identity was given.*vault_backup_age_identity"):
        rs.restore(made["archive"], target=str(tmp_path / "restored"), identity=identity)
    assert not (tmp_path / "restored").exists()


def test_the_restore_with_another_identity_fails_clearly(tree, tmp_path, keys):
    made = sealed(tree, tmp_path, keys)
    other, _pub = keypair(tmp_path / "keys" / "other")
    with open(other, "rb") as handle, pytest.raises(BackupError, match="cannot be decrypted with the given identity"):
        rs.restore(made["archive"], target=str(tmp_path / "restored"), identity=handle.read())
    assert not (tmp_path / "restored").exists()
    assert not os.path.exists(made["archive"][:-4])


def test_a_modified_ciphertext_with_a_matching_sha256_is_not_decrypted(tree, tmp_path, keys):
    made = sealed(tree, tmp_path, keys)
    path = made["archive"]
    with open(path, "r+b") as handle:
        handle.seek(os.path.getsize(path) // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with open(keys["identity"], "rb") as handle, pytest.raises(BackupError, match="cannot be decrypted"):
        rs.restore(path, sha256=sha256_file(path), target=str(tmp_path / "restored"), identity=handle.read())
    assert not (tmp_path / "restored").exists()


@pytest.mark.parametrize(("recipients", "message"), [
    ([], "recipients is empty"),
    (["age1notakey"], "is not an age public key"),
    (["ssh-dss AAAAB3NzaC1kc3M="], "is not an age public key"),
])
def test_bad_recipients_fail_before_anything_is_written(tree, tmp_path, keys, recipients, message):
    with pytest.raises(BackupError, match=message):
        create_archive([str(tree)], str(tmp_path / "outbox"), "web1", now=WHEN, recipients=recipients,
                       sign_key=keys["sign_key"])
    assert not (tmp_path / "outbox").exists()


@pytest.mark.parametrize("sign_key", [None, "nokey"])
def test_a_missing_sign_key_fails_before_anything_is_written(tree, tmp_path, keys, sign_key):
    with pytest.raises(BackupError, match=r"sign_key .* does not exist.*backup_sign_key"):
        create_archive([str(tree)], str(tmp_path / "outbox"), "web1", now=WHEN, recipients=[keys["recipient"]],
                       sign_key=sign_key and str(tmp_path / sign_key))
    assert not (tmp_path / "outbox").exists()


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_no_plaintext_archive_is_ever_written_to_the_outbox(tree, tmp_path, keys, wrap, compression):
    """age encrypts inside the stream: when it starts and once it has read the whole archive, the outbox
    holds only the ciphertext being written (the version before wrote the tested plaintext to .NAME,
    then encrypted that file)."""
    outbox, seen = tmp_path / "outbox", tmp_path / "seen"
    wrap("age", f'ls -A "{outbox}" > "{seen}.start"\n"$REAL" "$@"\nrc=$?\nls -A "{outbox}" > "{seen}.end"\nexit $rc')
    made = sealed(tree, tmp_path, keys, compression=compression)
    assert (tmp_path / "seen.start").read_text().split() == [made["name"] + ".part"]
    assert (tmp_path / "seen.end").read_text().split() == [made["name"] + ".part"]
    assert sorted(os.listdir(outbox)) == [made["name"], made["name"] + ".sha256", made["name"] + ".sig"]
    with open(keys["identity"], "rb") as handle:
        result = rs.restore(made["archive"], target=str(tmp_path / "restored"), identity=handle.read())
    assert result["encrypted"] is True
    assert (tmp_path / "restored" / str(tree).lstrip("/") / "etc" / "app.conf").read_text() == "listen 8080\n"


STAGE_FAILURES = [
    pytest.param("tar", 'cat >/dev/null; echo "tar: /data: Cannot open: Input/output error" >&2; exit 2',
                 r"reading the files to archive failed: .*tar: /data: Cannot open: Input/output error", id="tar"),
    pytest.param("pigz", 'cat >/dev/null; echo "pigz: write error (No space left on device)" >&2; exit 1',
                 r"pigz failed with exit code 1: pigz: write error", id="compressor"),
    pytest.param("gzip", 'if [ "$1" = -t ]; then cat >/dev/null; echo "gzip: stdin: crc error" >&2; exit 1; fi\n'
                 'exec "$REAL" "$@"',
                 r"integrity test \(gzip -t\) of the new archive failed with exit code 1: gzip: stdin: crc error",
                 id="tester"),
    pytest.param("age", 'head -c 4096 >/dev/null; echo "age: error: failed to write output" >&2; exit 1',
                 r"age \(encrypting to backup_age_recipients\) failed with exit code 1: age: error: failed to write",
                 id="age-mid-stream"),
    pytest.param("ssh-keygen", 'echo "Couldn\'t sign message: agent refused operation" >&2; exit 255',
                 r"ssh-keygen -Y sign with .* failed \(check backup_sign_key\): Couldn't sign message", id="signature"),
]


@pytest.mark.parametrize(("program", "body", "message"), STAGE_FAILURES)
def test_a_failing_stage_leaves_nothing_behind(tree, tmp_path, keys, wrap, program, body, message):
    """Whichever tool of the stream fails, the error names it, and the outbox is left empty: no .part,
    no signature, nothing in clear."""
    if shutil.which("pigz") is None:
        pytest.skip("pigz not installed")
    wrap(program, body)
    with pytest.raises(BackupError, match=message):
        sealed(tree, tmp_path, keys, threads=2)  # pigz compresses, gzip -t tests
    assert os.listdir(tmp_path / "outbox") == []


@pytest.mark.parametrize("encrypted", [False, True])
def test_a_file_on_disk_that_differs_from_the_stream_is_discarded(tree, tmp_path, keys, monkeypatch, encrypted):
    def read_back_corrupted(path):  # the disk returns other bytes than were written
        with open(path, "r+b") as handle:
            handle.seek(100)
            byte = handle.read(1)
            handle.seek(100)
            handle.write(bytes([byte[0] ^ 0xFF]))
        return sha256_file(path)

    monkeypatch.setattr(ba, "sha256_file", read_back_corrupted)
    crypto = {"recipients": [keys["recipient"]], "sign_key": keys["sign_key"]} if encrypted else {}
    with pytest.raises(BackupError, match="the file on disk does not match the stream that passed the integrity test"):
        create_archive([str(tree)], str(tmp_path / "outbox"), "web1", now=WHEN, **crypto)
    assert os.listdir(tmp_path / "outbox") == []


def test_a_run_killed_while_encrypting_leaves_only_a_locked_part_the_next_run_removes(tree, tmp_path, keys, wrap):
    ready, outbox = tmp_path / "age.pid", tmp_path / "outbox"
    wrap("age", f'echo $$ > "{ready}.tmp"; mv "{ready}.tmp" "{ready}"; exec sleep 60')
    child = os.fork()
    if child == 0:  # the run that is killed mid-stream (age stalls)
        try:
            sealed(tree, tmp_path, keys)
        finally:
            os._exit(0)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert time.monotonic() < deadline, "age was never started"
            time.sleep(0.05)
        assert os.listdir(outbox) == [NAME + ".part"]  # the ciphertext being written; nothing in clear
        assert remove_leftovers(str(outbox)) == []  # its live writer holds it
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        if ready.exists():
            os.kill(int(ready.read_text()), signal.SIGKILL)
    assert remove_leftovers(str(outbox)) == [NAME + ".part"]
    assert os.listdir(outbox) == []


def test_a_signature_left_without_its_archive_is_removed_by_the_next_run(tmp_path):
    """A run killed after signing and before the rename left NAME.sig beside an unlocked NAME.part;
    a signature whose archive is there, or is still being written (locked .part), stays."""
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    killed, kept, writing = NAME, NAME.replace("web1", "web2"), NAME.replace("web1", "web3")
    (outbox / (killed + ".part")).write_bytes(b"ciphertext")
    (outbox / (killed + ".sig")).write_text("signature")
    (outbox / kept).write_bytes(b"ciphertext")
    (outbox / (kept + ".sig")).write_text("signature")
    (outbox / (writing + ".part")).write_bytes(b"ciphertext")
    (outbox / (writing + ".sig")).write_text("signature")
    alone = NAME.replace("web1", "web4") + ".sig"
    (outbox / alone).write_text("signature")
    held = os.open(outbox / (writing + ".part"), os.O_RDONLY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert remove_leftovers(str(outbox)) == sorted([killed + ".part", killed + ".sig", alone])
    finally:
        os.close(held)
    assert sorted(os.listdir(outbox)) == sorted([kept, kept + ".sig", writing + ".part", writing + ".sig"])


def test_recipients_with_a_comment_are_accepted(keys):
    assert bc.check_recipients([keys["recipient"] + " controller@vault"]) == [keys["recipient"]]


def test_shipping_carries_the_signature_and_the_receiver_stores_it(tree, tmp_path, keys, local_ssh):
    program, root = local_ssh
    (root / "web1").mkdir()
    made = sealed(tree, tmp_path, keys)
    key = tmp_path / "id_ed25519"
    key.write_text("not used by the local transport\n")
    far = Remote("backup", "bk-web1", identity_file=str(key), ssh_program=program)
    result = ship(str(tmp_path / "outbox"), far)
    assert [t["name"] for t in result["transferred"]] == [made["name"]]
    stored = root / "web1" / made["name"]
    assert sha256_file(stored) == made["sha256"]
    assert verify_signature(keys["signers"], made["name"], made["sha256"], (root / "web1" / (made["name"] + ".sig"))
                            .read_text()) == 0
    assert os.listdir(tmp_path / "outbox") == []
    # Rotation and scrub need no key; quarantine and deletion take the signature along.
    assert br.choose(str(root / "web1"), "web1")["name"] == made["name"]
    moved = quarantine(str(stored), "test")
    assert os.path.exists(moved + ".sig") and not os.path.exists(str(stored) + ".sig")


def test_the_receiver_refuses_an_encrypted_archive_without_a_signature_or_with_junk(tmp_path):
    base = tmp_path / "web1"
    base.mkdir()
    body = b"age-encryption.org/v1\n..."
    sha = hashlib.sha256(body).hexdigest()
    name = "web1-20261127T020000Z.tar.gz.age"

    with pytest.raises(rx.Refused, match="accepted only with the source's signature"):
        rx.put(str(base), name, str(len(body)), io.BytesIO(body), sha)
    with pytest.raises(rx.Refused, match="not an SSH signature"):
        rx.put(str(base), name, str(len(body)), io.BytesIO(body), sha, signature=bc.pack_signature("hello"))
    with pytest.raises(rx.Refused, match="not a base64 word"):
        rx.put(str(base), name, str(len(body)), io.BytesIO(body), sha, signature="a" * 5000)
    assert sorted(os.listdir(base)) in ([], [".incoming"])
