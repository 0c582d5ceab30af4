"""Versioned JSON manifests, the only thing one stage hands to the next: one module per file owns its schema."""
from edgeres.manifests._base import (
    FILE_NAMES,
    FORMAT_VERSIONS,
    read_manifest,
    require,
    write_manifest,
)

__all__ = ["FILE_NAMES", "FORMAT_VERSIONS", "read_manifest", "require", "write_manifest"]
