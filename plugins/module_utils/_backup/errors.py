# Copyright: streamcloud platform engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one exception of the backup pipeline."""

from __future__ import annotations


class BackupError(Exception):
    """A failure with a message meant for the operator: what failed and what to do."""
