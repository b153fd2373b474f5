"""rclone --auth-proxy program for the streamcloud file web client.

rclone passes the browser's user name and password as JSON on stdin and expects the configuration
of the backend that serves this user. The backend is this host's own ProFTPD SFTP server, logged in
with the same credentials: ProFTPD checks the password and confines the session to the user's home,
so the web client holds no user database and no right to any file of its own.
"""

import json
import os
import re
import sys

SFTP_PORT = os.environ.get("STREAMCLOUD_SFTP_PORT", "2222")


def main() -> int:
    request = json.load(sys.stdin)
    user = str(request.get("user", ""))
    password = str(request.get("pass", ""))
    if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", user) or not password:
        print("refused: not a valid user name", file=sys.stderr)
        return 1
    backend = {
        "type": "sftp",
        "_root": "",
        "_obscure": "pass",
        "host": "127.0.0.1",
        "port": SFTP_PORT,
        "user": user,
        "pass": password,
        # mod_sftp has no shell: no remote md5sum/sha1sum, no "df".
        "shell_type": "none",
        "disable_hashcheck": "true",
        "known_hosts_file": "/etc/proftpd/webclient/known_hosts",
    }
    json.dump(backend, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
