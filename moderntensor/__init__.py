"""ModernTensor node: a Proof-of-Stake Layer-1 with Ethereum formats, on Trio."""

__version__ = "0.1.0"

__all__ = ["__version__"]
