"""The backup host trusts no client (issue 11): an intruder on backup-web uses that host's own
backup key against the receiver, through the real sshd and its forced command.

Runs after test_backup.py and test_restore_drill.py (file order): the archives they published are
the "genuine" history the attacks must not touch.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from pathlib import Path

import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]
).get_hosts("backup_server")

SERVER, WEB = "backup-server", "backup-web"
ROOT = "/srv/streamcloud-backup"
HOME = f"{ROOT}/{WEB}"
CLI = "/usr/local/sbin/streamcloud-backup"
CLIENT_SSH = ("ssh -T -o BatchMode=yes -i /etc/streamcloud-backup/id_ed25519 -o IdentitiesOnly=yes "
              "-o UserKnownHostsFile=/etc/streamcloud-backup/known_hosts")
PAYLOAD = "/var/tmp/payload"
# The private key the archives are encrypted to (the vault's stand-in, made on the controller by prepare.yml).
IDENTITY = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / ".build" / "backup-crypt" / "id_age"


def sh(container: str, command: str, check: bool = False, timeout: int = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", "exec", container, "bash", "-c", command],
                            capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{container}: {command}: {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def receiver(command: str, stdin: str = "/dev/null") -> subprocess.CompletedProcess:
    """One receiver command from backup-web with backup-web's own key, as an intruder would."""
    return sh(WEB, f"{CLIENT_SSH} bk-{WEB}@{SERVER} '{command}' < {stdin}", timeout=60)


def stored() -> dict[str, str]:
    """Every file in the account's directory (not below it) with its SHA-256."""
    out = sh(SERVER, f"cd {HOME} && find . -maxdepth 1 -type f -printf '%f\\0' | sort -z | xargs -0r sha256sum",
             check=True).stdout
    return {name: digest for digest, name in (line.split(maxsplit=1) for line in out.splitlines())}


def payload(size: int = 100_000) -> tuple[int, str]:
    sh(WEB, f"head -c {size} /dev/urandom > {PAYLOAD}", check=True)
    return size, sh(WEB, f"sha256sum {PAYLOAD}", check=True).stdout.split()[0]


def rotate_check(policy: str) -> dict:
    return json.loads(sh(SERVER, f"{CLI} rotate --path {HOME} {policy} --check", check=True).stdout)


def forget(*names: str) -> None:
    """Removes test uploads as the operator would (root on the backup host), sidecars included."""
    for name in names:
        sh(SERVER, f"rm -f {HOME}/{name} {HOME}/{name}.sha256 {HOME}/{name}.received", check=True)


def run_client() -> subprocess.CompletedProcess:
    """One backup run, in a second of its own: archives are named to the second, and a second archive
    of one name is refused (never overwritten), so two runs within one second would collide."""
    time.sleep(1.1)
    return sh(WEB, f"{CLI} run")


def test_genuine_history_exists():
    assert run_client().returncode == 0
    assert any(name.endswith(".tar.gz.age") for name in stored())


def test_twelve_uploads_dated_2099_are_refused_and_nothing_genuine_changes():
    before = stored()
    size, digest = payload()
    for month in range(1, 13):
        result = receiver(f"put {WEB}-2099{month:02d}01T000000Z.tar.gz {size} {digest}", PAYLOAD)
        assert result.returncode == 2, result.stderr
        assert "after the backup host's clock" in result.stderr
        assert "backup_server_max_future_skew" in result.stderr
    assert stored() == before
    assert sh(SERVER, f"ls -A {HOME}/.incoming").stdout.split() == []


def test_a_client_whose_clock_is_at_2000_keeps_its_newest_archive():
    size, digest = payload()
    late = f"{WEB}-20000101T000000Z.tar.gz"
    try:
        result = receiver(f"put {late} {size} {digest}", PAYLOAD)
        assert result.returncode == 0, result.stderr
        record = json.loads(sh(SERVER, f"cat {HOME}/{late}.received", check=True).stdout)
        today = sh(SERVER, "date -u +%Y%m%d", check=True).stdout.strip()
        assert record["received"][:8] == today and record["sha256"] == digest
        # The receive log is the backup host's: the account's files are written by the receiver only.
        assert sh(SERVER, f"stat -c %U {HOME}/{late}.received", check=True).stdout.strip() == f"bk-{WEB}"
        plan = rotate_check("--keep-last 1")
        assert [os.path.basename(k["path"]) for k in plan["kept"]] == [late]
        assert plan["protected"] == [f"{HOME}/{late}"]
    finally:
        forget(late)


def test_no_client_command_deletes_or_overwrites_a_stored_archive():
    genuine = sorted(name for name in stored() if name.endswith((".tar.gz", ".tar.gz.age")))[-1]
    before = stored()
    size, digest = payload()
    attempts = [
        (f"put {genuine} {size} {digest}", "never overwritten"),
        (f"put {genuine} {size}", "put takes 3 or 4 argument(s)"),
        (f"commit {genuine} {digest}", "'commit' is not allowed"),
        (f"get {genuine}", "'get' is not allowed"),
        (f"verify {genuine}", "'verify' is not allowed"),
        (f"put backup-db-20261101T000000Z.tar.gz {size} {digest}", f"receives the archives of {WEB} only"),
        (f"put ../{WEB}/{genuine} {size} {digest}", "is not an archive name"),
        ("rm " + genuine, "'rm' is not allowed"),
        ("delete " + genuine, "'delete' is not allowed"),
        ("rotate --keep-last 1", "'rotate' is not allowed"),
    ]
    for command, refusal in attempts:
        result = receiver(command, PAYLOAD)
        assert result.returncode == 2, (command, result.stderr)
        assert refusal in result.stderr, (command, result.stderr)
    assert stored() == before
    assert sh(SERVER, "stat -c '%U %a' /etc/streamcloud-backup-receiver.json", check=True).stdout.split() == [
        "root", "644"]


def scrub_as_cron() -> subprocess.CompletedProcess:
    """The scrub's cron entry on the backup host, run as cron runs it: its own command line, as root."""
    entries = [line for line in sh(SERVER, "cat /etc/cron.d/streamcloud-backup-scrub", check=True).stdout.splitlines()
               if line.strip() and not line.startswith("#")]
    assert len(entries) == 1, entries
    job = entries[0].split(None, 6)[6]
    assert job.startswith("nice -n 10 ionice -c2 -n7 /usr/local/sbin/streamcloud-backup scrub "), job
    return sh(SERVER, f"sh -c '{job}'", timeout=600)


def test_the_scrub_quarantines_a_corrupted_archive_and_says_so_without_any_key():
    """Finding 2 and the scrub: an archive corrupted on the backup host is found by the scheduled scrub (which
    hashes every archive of every source, the encrypted ones as ciphertext: the backup host has no key), moved to
    .quarantine/, reported in the status file for monitoring, and fills no retention slot."""
    size, digest = payload()
    name = f"{WEB}-20000102T000000Z.tar.gz"
    assert receiver(f"put {name} {size} {digest}", PAYLOAD).returncode == 0
    sh(SERVER, f"printf 'X' | dd of={HOME}/{name} bs=1 seek=5000 conv=notrunc status=none", check=True)
    sealed = [n for n in stored() if n.endswith(".tar.gz.age")]
    assert sealed
    secret = [line for line in IDENTITY.read_text().splitlines() if line and not line.startswith("-----")][1]
    assert sh(SERVER, f"grep -rqsF '{secret}' /etc /root /srv /var /home /usr/local").returncode == 1
    result = scrub_as_cron()
    assert result.returncode == 3, result.stderr
    status = json.loads(sh(SERVER, "cat /var/lib/streamcloud-backup/scrub.json", check=True).stdout)
    assert status["status"] == "bad" and [b["path"] for b in status["bad"]] == [f"{HOME}/{name}"]
    assert "checksum mismatch" in status["bad"][0]["reason"]
    assert status["archives_checked"] > len(sealed) and status["duration_s"] >= 0 and status["time"]
    assert name not in stored() and all(n in stored() for n in sealed)
    quarantined = sh(SERVER, f"ls {HOME}/.quarantine", check=True).stdout.split()
    assert {name, name + ".sha256", name + ".reason"} <= set(quarantined)
    plan = rotate_check("--keep-last 30")
    assert all(name not in k["path"] for k in plan["kept"])
    # Scrubbed again: nothing left to report.
    assert scrub_as_cron().returncode == 0
    assert json.loads(sh(SERVER, "cat /var/lib/streamcloud-backup/scrub.json", check=True).stdout)["bad"] == []


def test_two_uploads_of_one_name_then_a_killed_receiver():
    """The first upload stalls half-way; a second of the same name is refused; then the first
    receiver is killed (-9, nothing can clean up): its client is told the receiver stopped (not
    "unreachable"), and the next upload removes what it left in .incoming."""
    name = f"{WEB}-20000103T000000Z.tar.gz"
    size, digest = payload(4_000_000)
    script = (f"rm -f /var/tmp/feed; mkfifo /var/tmp/feed; "
              "python3 -c \"import sys; sys.path.insert(0, '/usr/local/sbin/streamcloud-backup'); "
              "from ansible_collections.streamcloud.platform.plugins.module_utils._backup.transfer import Remote; "
              f"r = Remote('{SERVER}', 'bk-{WEB}', identity_file='/etc/streamcloud-backup/id_ed25519', "
              "known_hosts_file='/etc/streamcloud-backup/known_hosts')\n"
              "try:\n"
              f"    r.call('put {name} {size} {digest}', stdin=open('/var/tmp/feed', 'rb'))\n"
              "except Exception as exc:\n"
              "    print(type(exc).__name__, exc)\n\" & pid=$!; "
              f"exec 3>/var/tmp/feed; head -c 1048576 {PAYLOAD} >&3; "
              "while [ ! -e /var/tmp/killed ]; do sleep 0.2; done; wait $pid; exec 3>&-; "
              "rm -f /var/tmp/feed /var/tmp/killed")
    upload = subprocess.Popen(["docker", "exec", WEB, "bash", "-c", script], stdout=subprocess.PIPE, text=True)
    part = f"{HOME}/.incoming/{name}.part"
    try:
        for _ in range(100):
            if int(sh(SERVER, f"stat -c %s {part} 2>/dev/null").stdout.strip() or 0) >= 1048576:
                break
            time.sleep(0.2)
        second = receiver(f"put {name} {size} {digest}", PAYLOAD)
        assert second.returncode == 2 and f"another upload of {name} is in progress" in second.stderr
        pid = sh(SERVER, f"pgrep -u bk-{WEB} -f 'streamcloud-backup-receive'", check=True).stdout.split()
        assert len(pid) == 1
        sh(SERVER, f"kill -9 {pid[0]}", check=True)
    finally:
        time.sleep(1)
        sh(WEB, "touch /var/tmp/killed", check=True)
        out, _err = upload.communicate(timeout=60)
    assert out.startswith("BackupError") and "the receiver stopped without an answer" in out, out
    assert "unreachable" not in out
    left = sh(SERVER, f"ls -A {HOME}/.incoming", check=True).stdout.split()
    assert name + ".part" in left  # kill -9: nothing ran to clean up
    # The next upload (of any name) removes what no live receiver holds, then stores its own.
    assert receiver(f"put {name} {size} {digest}", PAYLOAD).returncode == 0
    assert sh(SERVER, f"ls -A {HOME}/.incoming", check=True).stdout.split() == []
    forget(name)


def test_a_quota_refuses_an_upload_before_writing_and_the_client_says_which_variable():
    settings = "/etc/streamcloud-backup-receiver.json"
    original = sh(SERVER, f"cat {settings}", check=True).stdout
    assert json.loads(original)["quota_mb_by_source"] == {"backup-db": 4096}
    used = int(sh(SERVER, f"du -sb --apparent-size {HOME} | cut -f1", check=True).stdout)
    quota = used // (1024 * 1024) + 1
    sh(SERVER, f"echo '{json.dumps({'max_future_skew': 3600, 'quota_mb': 0, 'quota_mb_by_source': {WEB: quota}})}'"
               f" > {settings}", check=True)
    before = stored()
    try:
        sh(WEB, "head -c 3000000 /dev/urandom > /srv/data/media/quota.bin", check=True)
        result = run_client()
        line = json.loads([x for x in result.stdout.splitlines() if x.startswith("{")][-1])
        assert result.returncode == 1 and line["status"] == "failed"
        assert f"over its quota of {quota} MiB" in line["error"], line
        assert f"backup_server_quota_mb_by_source['{WEB}']" in line["error"]
        assert stored() == before
        assert sh(SERVER, f"ls -A {HOME}/.incoming").stdout.split() == []
        assert line["archive"] in sh(WEB, "ls /var/backups/streamcloud/outbox", check=True).stdout.split()
    finally:
        encoded = base64.b64encode(original.encode()).decode()
        sh(SERVER, f"echo {encoded} | base64 -d > {settings}", check=True)
        sh(WEB, "rm -f /srv/data/media/quota.bin", check=True)
    assert sh(SERVER, f"cat {settings}", check=True).stdout == original
    # The quota lifted, the archive kept in the outbox goes with the next run.
    code = run_client().returncode
    assert code == 0
    assert sh(WEB, "ls /var/backups/streamcloud/outbox", check=True).stdout.split() == []


def test_a_part_left_in_the_outbox_by_a_killed_run_is_removed_by_the_next_run():
    leftover = f"{WEB}-20261101T000000Z.tar.gz.part"
    sh(WEB, f"head -c 5000000 /dev/urandom > /var/backups/streamcloud/outbox/{leftover}", check=True)
    result = run_client()
    line = json.loads([x for x in result.stdout.splitlines() if x.startswith("{")][-1])
    assert result.returncode == 0 and line["removed_leftovers"] == [leftover], line
    assert sh(WEB, "ls -A /var/backups/streamcloud/outbox", check=True).stdout.split() == []
