"""tireid-lite: a course and reproduction kit for text-to-image person re-identification."""

from tireid_lite.threads import share_cores_politely as _share_cores_politely

__version__ = "0.1.0"

_share_cores_politely()  # before torch loads OpenMP: see tireid_lite.threads
