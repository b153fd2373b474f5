# Copyright: streamcloud platform engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The per-entry manifest: what an archive member is, and whether a file on disk is still that.

An entry records type, mode (with setuid/setgid/sticky), owner, size, mtime (nanoseconds), link
target, extended attributes, the POSIX ACLs and the SHA-256 of the contents. It is built from the
tar member GNU tar wrote (so it describes exactly what is in the archive) and compared with a
member when the archive is verified, and with ``lstat``/``getxattr`` of the extracted file after
a restore.
"""

from __future__ import annotations

import base64
import decimal
import grp
import hashlib
import os
import pwd
import stat
import struct
import tarfile

# The archive's last member: this manifest, as JSON.
MANIFEST_NAME = ".streamcloud-backup-manifest.json"
XATTR_PREFIX = "SCHILY.xattr."
ACL_KEYS = {"access": "SCHILY.acl.access", "default": "SCHILY.acl.default"}
# GNU tar keeps ACLs in their own records (--acls); the same data as xattrs is not compared twice.
ACL_XATTRS = {"access": "system.posix_acl_access", "default": "system.posix_acl_default"}
TYPES = {
    tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file", tarfile.CONTTYPE: "file", tarfile.GNUTYPE_SPARSE: "file",
    tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "hardlink",
    tarfile.FIFOTYPE: "fifo", tarfile.CHRTYPE: "chardev", tarfile.BLKTYPE: "blockdev",
}
_ACL_TAGS = {"user": (0x01, 0x02), "group": (0x04, 0x08), "mask": (0x10, None), "other": (0x20, None)}


def _mtime_ns(info):
    text = info.pax_headers.get("mtime")
    value = decimal.Decimal(text) if text else decimal.Decimal(info.mtime)
    return int((value * 1_000_000_000).to_integral_value(rounding=decimal.ROUND_FLOOR))


def from_member(info, sha256=None):
    """The manifest entry of one tar member (``sha256`` of its contents for regular files)."""
    kind = TYPES.get(info.type, "other")
    entry = {
        "type": kind, "mode": info.mode & 0o7777, "uid": info.uid, "gid": info.gid,
        "size": info.size if kind == "file" else 0, "mtime_ns": _mtime_ns(info),
        "link": info.linkname if kind in ("symlink", "hardlink") else None,
        "xattrs": {key[len(XATTR_PREFIX):]: base64.b64encode(value.encode("utf-8", "surrogateescape")).decode()
                   for key, value in sorted(info.pax_headers.items())
                   if key.startswith(XATTR_PREFIX) and key[len(XATTR_PREFIX):] not in ACL_XATTRS.values()},
        "acl": {name: info.pax_headers[key] for name, key in ACL_KEYS.items() if info.pax_headers.get(key)},
        "sha256": sha256,
    }
    if kind in ("chardev", "blockdev"):
        entry["dev"] = [info.devmajor, info.devminor]
    return entry


def hash_member(tar, info):
    """SHA-256 of a regular member's contents, read from a streamed archive."""
    return hashlib.file_digest(tar.extractfile(info), "sha256").hexdigest()


def member_differences(entry, info, sha256):
    """Fields in which an archive member differs from its manifest entry (empty: identical)."""
    actual = from_member(info, sha256)
    return sorted(key for key in entry if entry.get(key) != actual.get(key))


def _parse_acl_text(text):
    """GNU tar's ACL text (``user::rw-,user:bob:r--:1001,...``) as a set of (tag, id, perms)."""
    result = set()
    for item in text.replace("\n", ",").split(","):
        fields = item.strip().split(":")
        if len(fields) < 3 or fields[0] not in _ACL_TAGS:
            continue
        tag, qualifier, perms = fields[0], fields[1], fields[2]
        ident = None
        if qualifier:
            if len(fields) > 3 and fields[3].isdigit():
                ident = int(fields[3])
            elif qualifier.isdigit():
                ident = int(qualifier)
            else:
                ident = pwd.getpwnam(qualifier).pw_uid if tag == "user" else grp.getgrnam(qualifier).gr_gid
        bits = sum(bit for bit, char in ((4, "r"), (2, "w"), (1, "x")) if char in perms)
        result.add((tag if ident is None else tag + ":", ident, bits))
    return result


def _decode_acl_xattr(raw):
    """The kernel's binary ACL (version 2: tag u16, perm u16, id u32 per entry) as (tag, id, perms)."""
    names = {}
    for name, (plain, qualified) in _ACL_TAGS.items():
        names[plain] = (name, False)
        if qualified:
            names[qualified] = (name + ":", True)
    result = set()
    for offset in range(4, len(raw) - 7, 8):
        tag, perm, ident = struct.unpack_from("<HHI", raw, offset)
        name, qualified = names.get(tag, (str(tag), True))
        result.add((name, ident if qualified else None, perm))
    return result


def _acl_matches(text, raw, mode):
    want = _parse_acl_text(text)
    if raw is not None and want == _decode_acl_xattr(raw):
        return True
    # A minimal ACL (owner/group/other only) is kept as the mode alone, without an xattr.
    return not any(tag.endswith(":") or tag == "mask" for tag, _i, _p in want) and want == {
        ("user", None, (mode >> 6) & 7), ("group", None, (mode >> 3) & 7), ("other", None, mode & 7)}


def _disk_type(st):
    for test, kind in ((stat.S_ISREG, "file"), (stat.S_ISDIR, "dir"), (stat.S_ISLNK, "symlink"),
                       (stat.S_ISFIFO, "fifo"), (stat.S_ISCHR, "chardev"), (stat.S_ISBLK, "blockdev")):
        if test(st.st_mode):
            return kind
    return "other"


def _xattrs_on_disk(path):
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    values = {}
    for name in names:
        if name in ACL_XATTRS.values():
            continue
        try:
            values[name] = base64.b64encode(os.getxattr(path, name, follow_symlinks=False)).decode()
        except OSError:
            continue
    return values


def _acl_on_disk(path, which):
    try:
        return os.getxattr(path, ACL_XATTRS[which], follow_symlinks=False)
    except OSError:
        return None


def disk_differences(path, entry, sha256_file, link_root):
    """Fields in which the file at ``path`` differs from its manifest entry (empty: identical).

    ``link_root`` is the directory hard-link targets are relative to (the restore target).
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return ["missing"]
    kind = entry["type"]
    diffs = []
    if kind == "hardlink":
        try:
            other = os.lstat(os.path.join(link_root, entry["link"]))
        except FileNotFoundError:
            return ["link"]
        return [] if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino) else ["link"]
    if _disk_type(st) != kind:
        return ["type"]
    if stat.S_IMODE(st.st_mode) != entry["mode"] and kind != "symlink":
        diffs.append("mode")
    if (st.st_uid, st.st_gid) != (entry["uid"], entry["gid"]):
        diffs.append("owner")
    if kind == "file":
        if st.st_size != entry["size"]:
            diffs.append("size")
        elif sha256_file(path) != entry["sha256"]:
            diffs.append("sha256")
    if kind != "symlink" and st.st_mtime_ns != entry["mtime_ns"]:
        diffs.append("mtime")
    if kind == "symlink" and os.readlink(path) != entry["link"]:
        diffs.append("link")
    if kind in ("chardev", "blockdev") and [os.major(st.st_rdev), os.minor(st.st_rdev)] != entry.get("dev"):
        diffs.append("dev")
    if kind != "symlink" and _xattrs_on_disk(path) != entry.get("xattrs", {}):
        diffs.append("xattrs")
    for which, text in entry.get("acl", {}).items():
        if not _acl_matches(text, _acl_on_disk(path, which), st.st_mode):
            diffs.append("acl")
    return diffs
