"""Fast, memory-saving training paths of the built-in ops, shared by the search supernets
(:mod:`nasforge.spaces`) and the final networks (:mod:`nasforge.nets`).

- :mod:`nasforge.fused.functions`: autograd functions that compute exactly what the op
  modules compute but save less for backward, and faster CPU routes for some backward
  kernels;
- :mod:`nasforge.fused.plan`: which leaves of an op module run as those functions.

This package sits at the ``ops`` layer: it imports :mod:`nasforge.ops` and torch only.
"""
