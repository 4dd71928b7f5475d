"""Devices over SSH: the build machine measures and validates on the user's own devices.

``config``: the devices a user added (``devices.yaml``, pinned host keys). ``session``: one asyncssh
connection, uploads by content hash, requests to the device agent (``edgesmith.device.agent``), retries.
``client``: what the commands do with a device (add, probe, setup, bench, compare, validate, the race).
"""
