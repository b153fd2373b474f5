"""Shared by tests/unit and tests/roles: the collection reachable as ansible_collections.streamcloud.platform
through .build/collections (made by ``make venv``; made here when missing), before either tree loads."""

from pathlib import Path

COLLECTIONS = Path(__file__).resolve().parents[1] / ".build" / "collections"
LINK = COLLECTIONS / "ansible_collections" / "streamcloud" / "platform"
if not LINK.exists():
    LINK.parent.mkdir(parents=True, exist_ok=True)
    LINK.symlink_to(Path("../../../.."))
