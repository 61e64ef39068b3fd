"""bench: measures speech-to-text engines for real-time factor and word error rate."""

__version__ = "0.5.0"
