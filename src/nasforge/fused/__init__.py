"""Fast, memory-saving training paths of the built-in ops, shared by the search supernets
(:mod:`nasforge.spaces`) and the final networks (:mod:`nasforge.nets`).

- :mod:`nasforge.fused.functions`: autograd functions that compute exactly what the op
  modules compute but save less for backward, and faster CPU routes for some backward
  kernels;
- :mod:`nasforge.fused.plan`: which leaves of an op module run as those functions;
- :mod:`nasforge.fused.mix`: a supernet node's weighted sum in one pass per term;
- :mod:`nasforge.fused.chain`, :mod:`~nasforge.fused.bn`, :mod:`~nasforge.fused.pointwise`,
  :mod:`~nasforge.fused.crop`, :mod:`~nasforge.fused.grad`: a final network's sep/dil conv
  as one function, batch norm without false sharing, the 1×1 conv, cropped depthwise
  kernels, dense node gradients.

This package sits at the ``ops`` layer: it imports :mod:`nasforge.ops` and torch only.
"""
