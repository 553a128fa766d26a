"""CUKD Image Search core library (Qt-free).

Context Unaware Knowledge Distillation for Image Retrieval (Reddy et al., CVMI 2022,
arXiv:2207.09070): teachers, students, distillation, hashing, evaluation and the photo
library engine.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
