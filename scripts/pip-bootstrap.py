"""Stand-in for the get-pip.py that ansible-test downloads to put pip into its sanity venvs.

That download comes from a host this machine cannot reach. ansible-test documents saving the script
to ~/.ansible/test/cache/get_pip_<version>.py by hand; scripts/sanity.sh saves this one there
instead. It takes the same arguments (pip install arguments), installs pip from the interpreter's own
ensurepip, then lets that pip install what was asked (from PyPI, which is reachable).
"""

import ensurepip
import os
import subprocess
import sys

# ansible-test runs this with a cleaned environment, so a CA bundle set through PIP_CERT or
# SSL_CERT_FILE is lost; use the system bundle, which those normally name.
SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"

ensurepip.bootstrap(upgrade=True)
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
cert = ["--cert", SYSTEM_CA] if os.path.exists(SYSTEM_CA) else []
subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", *cert, *args])
