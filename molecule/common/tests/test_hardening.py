"""Issue 9: sshd throttling, moduli, host keys, stream-local forwarding, root-owned authorized keys,
security updates at converge, with a real scanner (ssh-audit from PyPI)."""

from __future__ import annotations

import configparser
import ipaddress
import json
import os
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest
import testinfra.utils.ansible_runner
import yaml

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]
).get_hosts("all")


@pytest.fixture(scope="module")
def address(address_of) -> str:
    return address_of("common-host")


@pytest.fixture(scope="module")
def sshd_config(host) -> dict:
    """sshd's effective configuration (sshd -T), first value of each keyword."""
    settings: dict = {}
    for line in host.check_output("/usr/sbin/sshd -T").splitlines():
        key, _, value = line.partition(" ")
        settings.setdefault(key, []).append(value)
    return settings


def open_ssh_connections(host) -> int:
    """TCP connections to sshd (port 22 or BASTION_PORT) that a session process still holds, the
    client's side closed or not (ESTABLISHED, CLOSE_WAIT, ...: anything but LISTEN and TIME_WAIT)."""
    ports = {"0016", f"{BASTION_PORT:04X}"}
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in host.file(table).content_string.splitlines()[1:]:
            fields = line.split()
            if fields[1].rsplit(":", 1)[1] in ports and fields[3] not in ("0A", "06"):
                count += 1
    return count


@pytest.fixture(autouse=True)
def settled_sshd(host):
    """Each test starts once the connections of the ones before are gone. sshd counts a connection as
    a startup until its session process has exited, which takes a while on a loaded machine: a test
    right after ssh-audit (dozens of connections) or a burst of logins could otherwise be dropped by
    PerSourceMaxStartups 3 for connections it did not make."""
    deadline = time.monotonic() + 60
    while open_ssh_connections(host) and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(0.5)  # sshd's listener learns of the exits through a pipe, a moment later


def openssh_has_per_source(host) -> bool:
    version = host.check_output("dpkg-query -W -f '${Version}' openssh-server").split(":")[-1]
    major, minor = (int(x) for x in version.split("p")[0].split(".")[:2])
    return (major, minor) >= (9, 8)


# The role's default common_sshd_admin_networks: the private address space.
ADMIN_NETWORKS = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]
# With LogLevel VERBOSE sshd logs each penalty it records ("srclimit_penalise: ipv4: new
# 127.0.0.1/32 active penalty of 30 seconds for penalty: failed authentication"); an exempt address
# gets none.
PENALTY_LOG = "srclimit_penalise"


def gateway() -> str:
    """The controller as the container sees it: the gateway of the container's network."""
    out = subprocess.run(["docker", "inspect", "--format", "{{json .NetworkSettings.Networks}}", "common-host"],
                         check=True, capture_output=True, text=True).stdout
    return next(n["Gateway"] for n in json.loads(out).values() if n.get("Gateway"))


def banner(address: str, source: str | None = None) -> bytes:
    """What sshd first sends to a new connection (b"" when it closes or resets it at once)."""
    with socket.create_connection((address, 22), timeout=10,
                                  source_address=(source, 0) if source else None) as conn:
        try:
            return conn.recv(64)
        except ConnectionResetError:
            return b""


def banner_within(address: str, seconds: float) -> bytes:
    """Connects until sshd answers with its banner or the time is up; returns the last answer."""
    deadline = time.monotonic() + seconds
    while True:
        data = banner(address)
        if data.startswith(b"SSH-") or time.monotonic() > deadline:
            return data
        time.sleep(0.5)


@pytest.fixture
def fresh_penalties(host, address):
    """sshd's listener keeps its penalties in memory: a restart starts from none, so that these tests
    give the same answer when they run again within the penalties' 10 minutes."""
    host.check_output("systemctl restart ssh")
    assert banner_within(address, 30).startswith(b"SSH-2.0-")
    return host.check_output("date '+%Y-%m-%d %H:%M:%S'")


def test_sshd_throttles_unauthenticated_connections(host, sshd_config):
    assert sshd_config["maxstartups"] == ["10:30:60"]
    assert sshd_config["persourcemaxstartups"] == ["3"]
    if openssh_has_per_source(host):
        penalties = dict(t.split(":", 1) for t in sshd_config["persourcepenalties"][0].split() if ":" in t)
        assert [penalties[k].rstrip("s") for k in ("authfail", "noauth", "grace-exceeded")] == ["30", "10", "30"]
        # The role's default, not set by the scenario: the controller is in it, the container's
        # loopback (the stand-in for a source on the Internet in the tests below) is not.
        assert sshd_config["persourcepenaltyexemptlist"] == [",".join(ADMIN_NETWORKS)]
    else:
        assert "persourcepenalties" not in sshd_config
    networks = [ipaddress.ip_network(n) for n in ADMIN_NETWORKS]
    assert any(ipaddress.ip_address(gateway()) in n for n in networks)
    assert not any(ipaddress.ip_address(a) in n for n in networks for a in ("127.0.0.1", "127.0.0.2"))


def test_a_fourth_unauthenticated_connection_from_one_source_is_dropped(address):
    held = [socket.create_connection((address, 22), timeout=10) for _ in range(3)]
    try:
        # Each of these got sshd's banner and is now an unauthenticated connection (a "startup").
        assert all(s.recv(64).startswith(b"SSH-2.0-") for s in held)
        data = banner(address)
        # Dropped: closed at once, no SSH banner (OpenSSH 9.2 first writes "Exceeded MaxStartups",
        # OpenSSH 10 "Not allowed at this time").
        assert not data.startswith(b"SSH-"), "sshd answered a fourth unauthenticated connection from one address"
        assert data in (b"", b"Exceeded MaxStartups\r\n", b"Not allowed at this time\r\n"), data
    finally:
        for s in held:
            s.close()
    # Once the held ones are gone, the same source is served again. sshd counts a connection as a
    # startup until its session process has seen the client go and exited, which takes a moment on
    # a loaded machine: the next connection may still be dropped for MaxStartups in between. The
    # controller is in the admin networks, so no penalty can be what refuses it (the next test
    # checks that in sshd's log).
    assert banner_within(address, 15).startswith(b"SSH-2.0-")


def test_failed_logins_from_an_admin_network_never_lock_it_out(host, address, keys_dir, ssh_client, tmp_path,
                                                               fresh_penalties):
    """The on-call engineer's side: aborted connections and an agent offering the wrong key, from
    the controller (in the default admin networks), must not keep the right key out."""
    for _ in range(3):
        assert banner(address).startswith(b"SSH-2.0-")  # and closed without authenticating
    wrong = tmp_path / "id_wrong"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)
    for _ in range(4):
        refused = ssh_client(address, "alice", "true", key=wrong)
        assert refused.returncode == 255 and "Permission denied" in refused.stderr, refused.stderr
    # Outside the exemption that is 3 x 10 s + 4 x 30 s of penalties here (and 3 x 1 s + 4 x 5 s with
    # OpenSSH 10's defaults), past the 15 s after which sshd refuses the source.
    login = ssh_client(address, "alice", "true", key=keys_dir / "id_alice")
    assert login.returncode == 0, login.stderr
    log = host.check_output(f"journalctl -q -u ssh --since '{fresh_penalties}'")
    assert [line for line in log.splitlines() if PENALTY_LOG in line and f" {gateway()}/" in line] == []


def test_a_source_that_fails_to_log_in_is_penalised(host, address, keys_dir, ssh_client, fresh_penalties):
    if not openssh_has_per_source(host):
        pytest.skip("PerSourcePenalties came with OpenSSH 9.8; this release has only the MaxStartups limits")
    # From outside the admin networks: the host's loopback, with a key nobody authorised.
    ssh = ("ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
           "-o ConnectTimeout=10 -i /root/penalty-test-key -o IdentitiesOnly=yes")
    host.check_output("rm -f /root/penalty-test-key* && ssh-keygen -q -t ed25519 -N '' -f /root/penalty-test-key")
    try:
        refused = host.run(f"{ssh} alice@127.0.0.1 true")
        assert refused.rc == 255 and "Permission denied" in refused.stderr
        # One failed authentication (30 s) is over the 15 s threshold: the next connection is dropped
        # before the banner, whatever it would have done.
        dropped = host.run(f"sleep 2; {ssh} alice@127.0.0.1 true")
        assert dropped.rc == 255 and "Permission denied" not in dropped.stderr, dropped.stderr
        log = host.check_output(f"journalctl -q -u ssh --since '{fresh_penalties}'")
        assert "127.0.0.1/32 active penalty of 30 seconds for penalty: failed authentication" in log, log[-2000:]
        # The admin network still gets in.
        login = ssh_client(address, "alice", "true", key=keys_dir / "id_alice")
        assert login.returncode == 0, login.stderr
    finally:
        host.run("rm -f /root/penalty-test-key /root/penalty-test-key.pub")


# Run in the container: connections from 127.0.0.2 that read the banner and leave without
# authenticating, as a port scanner or ssh-keyscan does, until sshd refuses one (at most 10).
SCANNER = """
import socket, time
for attempt in range(10):
    with socket.create_connection(("127.0.0.1", 22), timeout=10, source_address=("127.0.0.2", 0)) as conn:
        try:
            data = conn.recv(64)
        except ConnectionResetError:
            data = b""
    if not data.startswith(b"SSH-"):
        print(attempt, data)
        break
    time.sleep(1)
"""


def test_a_source_that_never_logs_in_is_penalised(host, fresh_penalties):
    if not openssh_has_per_source(host):
        pytest.skip("PerSourcePenalties came with OpenSSH 9.8; this release has only the MaxStartups limits")
    out = host.check_output(f"python3 -c '{SCANNER}'")
    assert out, "sshd served ten connections in a row from a source that never authenticated"
    attempt, answer = out.split(" ", 1)
    # Two such connections (2 x 10 s) pass the 15 s threshold: the third is refused or, when sshd had
    # not yet recorded the second one's end, the fourth.
    assert int(attempt) in (2, 3) and answer == "b'Not allowed at this time\\r\\n'", out
    log = host.check_output(f"journalctl -q -u ssh --since '{fresh_penalties}'")
    # sshd says why it dropped the connection.
    assert re.search(r"drop connection #\d+ from \[127\.0\.0\.2\]:\d+ .*"
                     r"penalty: connections without attempting authentication", log), log[-2000:]


ROOT = Path(__file__).resolve().parents[3]
BASTION_PORT = 2200


def bastion_settings() -> dict:
    """The common role's variables for the bastion in the AWS inventories (prod and dev say the same)."""
    return yaml.safe_load((ROOT / "inventories/prod/group_vars/bastion/common.yml").read_text())


def ansible_forks() -> int:
    config = configparser.ConfigParser()
    config.read(ROOT / "ansible.cfg")
    return config.getint("defaults", "forks")


def login_burst(address: str, port: int, key: Path, count: int) -> list[tuple[int, str]]:
    """`count` key logins from the controller started at once, as Ansible's forks open their
    ProxyCommands to the bastion; (exit code, stderr) of each."""
    argv = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "ConnectTimeout=30", "-o", "IdentitiesOnly=yes", "-i", str(key), "-p", str(port),
            f"alice@{address}", "true"]
    procs = [subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(count)]
    return [(proc.wait(timeout=180), proc.stderr.read()) for proc in procs]


@pytest.fixture
def bastion_sshd(host):
    """A second sshd in the container on BASTION_PORT, with the role's sshd_config as the bastion gets
    it: the two throttling lines carry the bastion's values from the inventory. (Not with sshd -o: for
    MaxStartups the file's value overrides the command line's.)"""
    settings = bastion_settings()
    startups, per_source = settings["common_sshd_max_startups"], settings["common_sshd_per_source_max_startups"]
    config = "/etc/ssh/sshd_config.bastion-test"
    host.check_output(f"sed -e 's/^MaxStartups .*/MaxStartups {startups}/'"
                      f" -e 's/^PerSourceMaxStartups .*/PerSourceMaxStartups {per_source}/'"
                      f" /etc/ssh/sshd_config > {config}")
    try:
        effective = host.check_output(f"/usr/sbin/sshd -T -f {config}").splitlines()
        assert f"maxstartups {startups}" in effective and f"persourcemaxstartups {per_source}" in effective
        host.check_output(f"/usr/sbin/sshd -f {config} -p {BASTION_PORT} -o PidFile=/run/sshd-bastion-test.pid")
        yield BASTION_PORT
    finally:
        host.run(f"kill $(cat /run/sshd-bastion-test.pid); rm -f {config}")


def test_the_bastion_takes_a_burst_of_ansible_forks_from_one_address(address, keys_dir, bastion_sshd):
    forks = ansible_forks()
    settings = bastion_settings()
    assert int(settings["common_sshd_max_startups"].split(":")[0]) >= forks
    assert int(settings["common_sshd_per_source_max_startups"]) >= forks
    failed = [err for code, err in login_burst(address, bastion_sshd, keys_dir / "id_alice", forks) if code != 0]
    assert failed == [], failed


def test_the_default_limits_drop_such_a_burst(address, keys_dir):
    """Why the bastion needs its own values: the same burst against the defaults (PerSourceMaxStartups 3)."""
    failed = [err for code, err in login_burst(address, 22, keys_dir / "id_alice", ansible_forks()) if code != 0]
    assert failed, "sshd with PerSourceMaxStartups 3 served every login of a burst from one address"
    # The burst's sessions are over once sshd serves a new connection again (see the fourth-connection test).
    assert banner_within(address, 15).startswith(b"SSH-2.0-")


def test_sshd_host_keys_are_ed25519_only(sshd_config, address):
    assert sshd_config["hostkey"] == ["/etc/ssh/ssh_host_ed25519_key"]
    keys = subprocess.run(["ssh-keyscan", "-T", "10", address], capture_output=True, text=True, check=False).stdout
    types = {line.split()[1] for line in keys.splitlines() if line and not line.startswith("#")}
    assert types == {"ssh-ed25519"}


def test_sshd_forbids_stream_local_forwarding(sshd_config):
    assert sshd_config["allowstreamlocalforwarding"] == ["no"]


def test_small_moduli_are_gone(host):
    sizes = [int(line.split()[4]) for line in host.file("/etc/ssh/moduli").content_string.splitlines()
             if line and not line.startswith("#")]
    assert sizes and min(sizes) >= 3071


def test_users_cannot_add_their_own_keys(host, address, keys_dir, ssh_client, sshd_config, tmp_path):
    assert sshd_config["authorizedkeysfile"] == ["/etc/ssh/authorized_keys/%u"]
    keys = host.file("/etc/ssh/authorized_keys/bob")
    assert (keys.user, keys.group, keys.mode) == ("root", "root", 0o644)
    new_key = tmp_path / "id_new"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(new_key)], check=True)
    pub = (tmp_path / "id_new.pub").read_text().strip()
    # bob (no sudo) writes the new key where sshd used to look, and tries the root-owned file.
    added = ssh_client(address, "bob", f"mkdir -p ~/.ssh && echo '{pub}' >> ~/.ssh/authorized_keys",
                       key=keys_dir / "id_bob")
    assert added.returncode == 0, added.stderr
    refused = ssh_client(address, "bob", f"echo '{pub}' >> /etc/ssh/authorized_keys/bob", key=keys_dir / "id_bob")
    assert refused.returncode != 0 and "Permission denied" in refused.stderr
    login = ssh_client(address, "bob", "true", key=new_key)
    assert login.returncode == 255 and "Permission denied" in login.stderr


def test_password_ageing_never_locks_an_admin_out(host, address, keys_dir, ssh_client):
    """login.defs says PASS_MAX_DAYS 365 for accounts made after the role ran, as the admins are. They
    have no password: an aged one would make PAM demand a change before any key login or sudo."""
    assert "PASS_MAX_DAYS\t\t365" in host.file("/etc/login.defs").content_string
    last_change = host.check_output("getent shadow alice").split(":")[2]
    host.check_output("chage -d \"$(date -d '500 days ago' +%F)\" alice")
    try:
        login = ssh_client(address, "alice", "sudo -n true", key=keys_dir / "id_alice")
        assert login.returncode == 0, login.stderr
    finally:
        host.check_output(f"chage -d {last_change} alice")
    assert host.check_output("getent shadow alice").split(":")[4] == ""  # no maximum age


def test_what_a_task_run_through_ssh_and_sudo_gets(host, address, keys_dir, ssh_client):
    """What every role's tasks get on a host Ansible reaches over SSH with sudo (AWS; the scenarios use
    the Docker API, without PAM): root's TMPDIR is private to root (libpam-tmpdir), so a directory
    made there cannot be handed to another user; Debian 13's PAM applies login.defs' UMASK too."""
    result = ssh_client(address, "alice", "sudo -n sh -c 'echo $TMPDIR; umask; stat -c %a:%U $TMPDIR'",
                        key=keys_dir / "id_alice")
    assert result.returncode == 0, result.stderr
    tmpdir, umask, mode = result.stdout.split()
    assert (tmpdir, mode) == ("/tmp/user/0", "700:root")
    debian13 = host.system_info.distribution == "debian" and host.system_info.release.split(".")[0] == "13"
    assert umask == ("0027" if debian13 else "0022")


def test_the_image_bootstrap_user_keeps_its_own_key_file(host, address, keys_dir, ssh_client):
    """common_sshd_home_keys_users: the image's user (ami here, ubuntu on the AMI) still logs in with
    the key the EC2 key pair put in its home, so Ansible can go on connecting as it until the admins
    exist; bob above, not listed, cannot use his."""
    assert host.file("/home/ami/.ssh/authorized_keys").exists
    assert not host.file("/etc/ssh/authorized_keys/ami").exists
    login = ssh_client(address, "ami", "true", key=keys_dir / "id_ami")
    assert login.returncode == 0, login.stderr
    effective = host.check_output("/usr/sbin/sshd -T -C user=ami,host=x,addr=10.0.0.1")
    assert "authorizedkeysfile /etc/ssh/authorized_keys/%u .ssh/authorized_keys" in effective.splitlines()


# Kept after the post-quantum hybrids for clients that lack them (OpenSSH before 8.5, paramiko, other
# libraries). ssh-audit (3.3 and later) warns about each of these, and only this warning is accepted.
CLASSICAL_KEX = {"curve25519-sha256", "curve25519-sha256@libssh.org", "diffie-hellman-group16-sha512",
                 "diffie-hellman-group18-sha512", "diffie-hellman-group-exchange-sha256"}
PQ_HYBRID_KEX = {"mlkem768x25519-sha256", "sntrup761x25519-sha512", "sntrup761x25519-sha512@openssh.com"}
NOT_PQ_SAFE = "does not provide protection against post-quantum attacks"


def test_ssh_audit_finds_no_failure_and_no_warning(address):
    result = subprocess.run(["ssh-audit", "--json", "--timeout", "20", address], capture_output=True, text=True,
                            timeout=300, check=False)
    report = json.loads(result.stdout)
    notes, classical = [], set()
    for section in ("kex", "key", "enc", "mac"):
        for algorithm in report.get(section, []):
            for level in ("fail", "warn"):
                for note in algorithm.get("notes", {}).get(level, []):
                    name = algorithm["algorithm"]
                    if (section, level, note) == ("kex", "warn", NOT_PQ_SAFE) and name in CLASSICAL_KEX:
                        classical.add(name)
                    else:
                        notes.append(f"{section} {algorithm['algorithm']}: {level} {note}")
    notes += [f"cve {c}" for c in report.get("cves", [])]
    assert notes == [], notes
    # A client that has a post-quantum hybrid gets it: the server lists them first.
    assert report["kex"][0]["algorithm"] in PQ_HYBRID_KEX
    # ssh-audit's exit code: 0 good, 2 warnings (only the classical key exchanges above), 3 failures.
    assert result.returncode == (2 if classical else 0), result.stdout[-2000:]


@pytest.mark.parametrize("kex", ["curve25519-sha256", "diffie-hellman-group16-sha512"])
def test_client_without_post_quantum_key_exchange_still_connects(address, keys_dir, ssh_client, kex):
    result = ssh_client(address, "alice", "true", key=keys_dir / "id_alice", options=["-o", f"KexAlgorithms={kex}"])
    assert result.returncode == 0, result.stderr


def test_weak_key_exchange_is_refused(address, keys_dir, ssh_client):
    result = ssh_client(address, "alice", "true", key=keys_dir / "id_alice",
                        options=["-o", "KexAlgorithms=diffie-hellman-group14-sha256,ecdh-sha2-nistp256"])
    assert result.returncode == 255 and "no matching key exchange method" in result.stderr


def test_no_security_update_is_pending(host):
    # The test must be able to fail: the security suite has to be among the apt sources.
    assert "-security" in host.check_output("apt-cache policy")
    simulation = host.check_output("apt-get --simulate --quiet dist-upgrade")
    pending = [line for line in simulation.splitlines() if line.startswith("Inst ") and "-security" in line]
    assert pending == []


def test_idle_login_shells_end_and_dump_no_core(host):
    out = host.check_output("runuser -l alice -c 'echo $TMOUT; ulimit -c; (TMOUT=0) 2>&1 || true'")
    timeout, core, change = out.splitlines()
    assert (timeout, core) == ("900", "0")
    assert "readonly variable" in change


def test_reboot_required_is_reported_and_done_only_when_asked(host, playbook, molecule_scenario_dir):
    """An update that needs a reboot leaves /run/reboot-required (update-notifier-common's convention)."""
    boot_id = host.file("/proc/sys/kernel/random/boot_id").content_string
    host.check_output("touch /run/reboot-required")
    try:
        reported = playbook(molecule_scenario_dir / "converge.yml", tags=["upgrades"])
        output = " ".join((reported.stdout + reported.stderr).split())
        assert reported.returncode == 0, output[-3000:]
        assert "needs a reboot for the updates to take effect" in output
        assert host.file("/proc/sys/kernel/random/boot_id").content_string == boot_id
        # Asked to reboot: the reboot task runs (check mode: a container cannot be rebooted by Ansible).
        asked = playbook(molecule_scenario_dir / "converge.yml", {"common_reboot_if_required": True},
                         check=True, tags=["upgrades"])
        output = " ".join((asked.stdout + asked.stderr).split())
        assert asked.returncode == 0, output[-3000:]
        assert "TASK [streamcloud.platform.common : Reboot because an update requires it] " in output
        assert "needs a reboot for the updates to take effect" not in output
        assert "changed: [common-host]" in output.split("Reboot because an update requires it]")[1].split("TASK")[0]
    finally:
        host.check_output("rm -f /run/reboot-required")

