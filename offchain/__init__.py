"""gridshare: privacy-preserving energy sharing among prosumers with on-chain settlement."""

__version__ = "0.1.0"
