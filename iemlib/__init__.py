"""iemlib: the library behind *Implicit EM, executable*.

The book's one result: for ``L = log sum_j exp(-d_j)``, ``dL/dd_j = -r_j`` with
``r_j = exp(-d_j) / sum_k exp(-d_k)``. Every chapter imports its computations from here.
"""

from .objectives import lse, responsibilities

__version__ = "0.1.0"
__all__ = ["lse", "responsibilities", "__version__"]
