"""The device side: what runs on a device with only the torch-free install.

``bundle``: ``edgesmith validate RUN_DIR`` re-validates a run's artifacts there. ``agent``: what the
build machine starts over SSH (``edgesmith.remote``) to bench, race and validate on the device, with
uploads cached by content hash, one timing job per device at a time, and nothing left behind when the
connection drops.
"""

from edgesmith.device.bundle import validate_bundle

__all__ = ["validate_bundle"]
