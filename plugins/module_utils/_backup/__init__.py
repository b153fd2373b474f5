# Copyright: streamcloud platform engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup pipeline, one job per file; no Ansible import anywhere in this package.

The modules import it (Ansible's module packager follows those imports), and the backup role installs the same
files on every host for the cron entry point and the backup host's receiver.
"""
