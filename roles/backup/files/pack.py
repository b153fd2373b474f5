# Copyright: streamcloud platform engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Packs the collection's backup package into one executable zip application, the same bytes for the same code.

    pack.py SOURCE_DIR OUTPUT [SHEBANG]

SOURCE_DIR is plugins/module_utils/_backup: every ``*.py`` in it goes in, under its collection path, so no list
of files is kept anywhere. Python runs a zip file whose first line is a shebang and that holds a ``__main__.py``
(PEP 441). Called as ``streamcloud-backup-receive`` (the receiving accounts' login shell, a link to it) it is
the receiver; under any other name, the cron command line. Entries are sorted, dated 1980-01-01 and given
mode 0644, so the file changes only when the code does and the role's copy of it is a no-op otherwise.
The output is replaced atomically, so two plays packing at once never ship half a file.
"""

import os
import sys
import zipfile

PACKAGE = "ansible_collections/streamcloud/platform/plugins/module_utils/_backup"
MAIN = """import os
import sys

if os.path.basename(sys.argv[0]) == "streamcloud-backup-receive":
    from ansible_collections.streamcloud.platform.plugins.module_utils._backup.receiver import main
else:
    from ansible_collections.streamcloud.platform.plugins.module_utils._backup.cli import main
sys.exit(main())
"""


def members(source):
    """(name in the zip, bytes), sorted: the namespace levels as empty packages, then the code."""
    parts = PACKAGE.split("/")
    out = [("/".join(parts[:depth]) + "/__init__.py", b"") for depth in range(1, len(parts))]
    out.append(("__main__.py", MAIN.encode()))
    for name in sorted(os.listdir(source)):
        if name.endswith(".py"):
            with open(os.path.join(source, name), "rb") as handle:
                out.append((f"{PACKAGE}/{name}", handle.read()))
    return sorted(out)


def pack(source, output, shebang="#!/usr/bin/python3 -I"):
    part = f"{output}.{os.getpid()}.part"
    with open(part, "wb") as handle:
        handle.write(shebang.encode() + b"\n")
        with zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in members(source):
                info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, data)
    os.chmod(part, 0o755)  # noqa: S103 - a program, run as the cron command and the receiver
    os.replace(part, output)


if __name__ == "__main__":
    pack(*sys.argv[1:4])
