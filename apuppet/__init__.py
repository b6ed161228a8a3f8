"""apuppet: self-hosted remote control of Android devices with a Janus-compatible server."""

__version__ = "0.1.0"
