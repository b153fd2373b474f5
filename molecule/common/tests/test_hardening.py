"""Issue 9: sshd throttling, moduli, host keys, stream-local forwarding, root-owned authorized keys,
security updates at converge, with a real scanner (ssh-audit from PyPI)."""

from __future__ import annotations

import json
import os
import socket
import subprocess

import pytest
import testinfra.utils.ansible_runner

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


def openssh_has_per_source(host) -> bool:
    version = host.check_output("dpkg-query -W -f '${Version}' openssh-server").split(":")[-1]
    major, minor = (int(x) for x in version.split("p")[0].split(".")[:2])
    return (major, minor) >= (9, 8)


def test_sshd_throttles_unauthenticated_connections(host, sshd_config):
    assert sshd_config["maxstartups"] == ["10:30:60"]
    assert sshd_config["persourcemaxstartups"] == ["3"]
    if openssh_has_per_source(host):
        penalties = dict(t.split(":", 1) for t in sshd_config["persourcepenalties"][0].split() if ":" in t)
        assert [penalties[k].rstrip("s") for k in ("authfail", "noauth", "grace-exceeded")] == ["30", "10", "30"]
        # The scenario exempts the controller, so that the logins refused on purpose by the other
        # tests do not lock the next ones out (the penalty itself is tested from another source below).
        assert sshd_config["persourcepenaltyexemptlist"] == [f"{gateway()}/32"]
    else:
        assert "persourcepenalties" not in sshd_config


def gateway() -> str:
    """The controller as the container sees it: the gateway of the container's network."""
    out = subprocess.run(["docker", "inspect", "--format", "{{json .NetworkSettings.Networks}}", "common-host"],
                         check=True, capture_output=True, text=True).stdout
    return next(n["Gateway"] for n in json.loads(out).values() if n.get("Gateway"))


def test_a_fourth_unauthenticated_connection_from_one_source_is_dropped(address):
    held = [socket.create_connection((address, 22), timeout=10) for _ in range(3)]
    try:
        # Each of these got sshd's banner and is now an unauthenticated connection (a "startup").
        assert all(s.recv(64).startswith(b"SSH-2.0-") for s in held)
        with socket.create_connection((address, 22), timeout=10) as extra:
            try:
                data = extra.recv(64)
            except ConnectionResetError:
                data = b""
        # Dropped: closed at once, no SSH banner (OpenSSH 9.2 first writes "Exceeded MaxStartups",
        # OpenSSH 10 "Not allowed at this time").
        assert not data.startswith(b"SSH-"), "sshd answered a fourth unauthenticated connection from one address"
        assert data in (b"", b"Exceeded MaxStartups\r\n", b"Not allowed at this time\r\n"), data
    finally:
        for s in held:
            s.close()
    # Once the held ones are gone, the same source is served again.
    with socket.create_connection((address, 22), timeout=10) as again:
        assert again.recv(64).startswith(b"SSH-2.0-")


def test_a_source_that_fails_to_log_in_is_penalised(host, address, keys_dir, ssh_client):
    if not openssh_has_per_source(host):
        pytest.skip("PerSourcePenalties came with OpenSSH 9.8; this release has only the MaxStartups limits")
    # From another source than the (exempt) controller: the host's loopback, with a key nobody authorised.
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
        assert "penalty: failed authentication" in host.check_output("journalctl -q -u ssh --since '5 min ago'")
        # The exempt controller still gets in.
        login = ssh_client(address, "alice", "true", key=keys_dir / "id_alice")
        assert login.returncode == 0, login.stderr
    finally:
        host.run("rm -f /root/penalty-test-key /root/penalty-test-key.pub")


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

