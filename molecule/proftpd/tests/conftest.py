"""Fixtures for the proftpd scenario: the server's address, the scenario's CA, FTPS sessions."""

from __future__ import annotations

import contextlib
import os
import ssl
import sys
from pathlib import Path

import pytest

# FTP over TLS whose data connections resume the control connection's TLS session: ProFTPD's mod_tls
# refuses those that do not (the scenario proves it with the plain ftplib.FTP_TLS). The same client
# as `make lab-check` (scripts/labcheck.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))
from labcheck import ReusingFTPS

SERVER = "proftpd-ftp"
USERS = {"alice": "Lab-only-alice-p4ssword", "bob": "Lab-only-bob-p4ssword"}
PASSIVE = range(49152, 49408)


@pytest.fixture(scope="session")
def address(address_of) -> str:
    return address_of(SERVER)


def platform_ca() -> Path:
    """The pki role's CA certificate, kept next to the scenario's inventory (pki_ca_dir)."""
    return Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent / "pki" / "lab" / "ca.crt"


@pytest.fixture(scope="session")
def tls_context() -> ssl.SSLContext:
    """Verifies the server against the platform CA, by the IP address in the certificate."""
    context = ssl.create_default_context(cafile=str(platform_ca()))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


@pytest.fixture
def ftps(address, tls_context):
    """ftps(user, password=None, cls=ReusingFTPS) -> a logged-in session with PROT P, closed afterwards."""
    sessions = []

    def connect(user: str, password: str | None = None, cls=ReusingFTPS):
        session = cls(context=tls_context, timeout=30)
        sessions.append(session)
        session.connect(address, 21)
        session.login(user, USERS[user] if password is None else password)
        session.prot_p()
        return session

    yield connect
    for session in sessions:
        with contextlib.suppress(OSError):
            session.close()
