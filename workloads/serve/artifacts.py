"""Read a ModelVersion's artifact and refuse it unless its sha256 is the one the spec names.

Why in the replica, again: the spec's digest is the identity of the model that analysis judged. A replica
that scored with another file (a re-upload under the same URI, a stale volume) would make every decision of
that version silently wrong, so the file is checked where it is loaded, every time a replica starts.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..local.manifests import ManifestError
from ..local.models import artifact_path


class ArtifactError(ValueError):
    """The artifact is unreadable or not the one the spec names; the message names the version and field."""


def load_artifact(version: str, uri: str, sha256: str, home: Path | None) -> bytes:
    """The file's bytes when its sha256 equals ``sha256``; ``local://`` URIs resolve against ``home``."""
    where = f"ModelVersion/{version}"
    if uri.startswith("local://") and home is None:
        raise ArtifactError(f"{where}: spec.artifact.uri: {uri!r} is relative to the tradeplane home, none given")
    try:
        path = artifact_path(uri, home or Path())
    except ManifestError as exc:
        raise ArtifactError(f"{where}: spec.artifact.uri: {exc}") from None
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"{where}: spec.artifact.uri: cannot read {path}: {exc.strerror}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise ArtifactError(
            f"{where}: spec.artifact.sha256: the file {path} has sha256 {digest}, the spec says {sha256}; refused"
        )
    return data
