"""Handoff: one shared definition of a qualified lead, enforced in Slack."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("handoff")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
