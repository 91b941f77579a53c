"""nasforge: neural architecture search on PyTorch (ENAS, DARTS, SNAS, BlockQNN)."""

__version__ = "0.1.0"
