"""TLS files for the embedded servers: a certificate, its key and the CA that signed it.

Tests make them with a throwaway CA (``trustme``); the servers only need the paths. PostgreSQL
refuses a key file readable by others or owned by another user, so :meth:`TlsFiles.install`
copies the three into a folder of the server's own, with the modes and owner it accepts.
"""

from __future__ import annotations

import os
import pwd
import shutil
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TlsFiles"]


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files: the server's certificate chain, its private key and the CA clients must trust.

    ``auth_clients``: the server also asks clients for a certificate signed by ``ca``
    (Redis ``tls-auth-clients yes``; PostgreSQL is left to ``pg_hba.conf``).
    """

    cert: Path
    key: Path
    ca: Path
    auth_clients: bool = False

    def install(self, folder: Path, *, owner: str | None) -> TlsFiles:
        """Copies in ``folder`` (the key private to ``owner``, or to us when ``None``)."""
        folder.mkdir(parents=True, exist_ok=True)
        copied = TlsFiles(folder / "server.crt", folder / "server.key", folder / "ca.crt", self.auth_clients)
        for source, target in ((self.cert, copied.cert), (self.key, copied.key), (self.ca, copied.ca)):
            shutil.copyfile(source, target)
            target.chmod(0o600 if target == copied.key else 0o644)
            if owner is not None:
                entry = pwd.getpwnam(owner)
                os.chown(target, entry.pw_uid, entry.pw_gid)
        if owner is not None:
            entry = pwd.getpwnam(owner)
            os.chown(folder, entry.pw_uid, entry.pw_gid)
        return copied
