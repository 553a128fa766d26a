"""Deep-hashing losses for step 2 of CUKDFIR (Reddy et al., arXiv:2207.09070).

* :class:`DCHLoss` — Deep Cauchy Hashing (Cao et al., CVPR 2018).
* :class:`CSQLoss` — Central Similarity Quantization (Yuan et al., CVPR 2020).
"""

from core.losses.csq import CSQLoss, hadamard_matrix, hash_centres, random_balanced_centres
from core.losses.dch import DCHLoss

__all__ = ["CSQLoss", "DCHLoss", "hadamard_matrix", "hash_centres", "random_balanced_centres"]
