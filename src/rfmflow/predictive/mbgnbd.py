"""The MBG/NBD model (modified BG/NBD).

Batislam, E. P., Denizel, M. & Filiztekin, A. (2007). Empirical validation and comparison of
models for customer base analysis. International Journal of Research in Marketing 24(3),
201-209. (The same model is the "CBG/NBD" of Hoppe & Wagner 2007.)

Assumptions: as BG/NBD (Poisson purchases at rate lambda ~ Gamma(r, alpha) while active;
dropout with probability p ~ Beta(a, b) independent of lambda), except that the dropout
opportunity also follows the *first* purchase: a customer without repeat purchases (x == 0)
may already be inactive, so P(alive) < 1 for every customer.

Likelihood (BDF 2007)::

    L = B(a, b+x+1)/B(a, b) * G(r+x) alpha^r / (G(r) (alpha+T)^(r+x))
      + B(a+1, b+x)/B(a, b) * G(r+x) alpha^r / (G(r) (alpha+t_x)^(r+x))

Inputs per customer, in the model's time unit: ``x`` repeat purchases, ``t_x`` time of the
last purchase since the first, ``T`` age. Parameters, in the paper's order: r, alpha, a, b.
"""

from __future__ import annotations

import numpy as np

from rfmflow.predictive._base import FloatArray
from rfmflow.predictive._beta_geometric import BetaGeometricModel, expected_q


class MBGNBD(BetaGeometricModel):
    """MBG/NBD (Batislam, Denizel & Filiztekin 2007): BG/NBD with a dropout opportunity right
    after the first purchase too."""

    name = "mbgnbd"
    label = "MBG/NBD"
    param_names = ("r", "alpha", "a", "b")
    _shift = 1

    def _expected_new(self, theta: FloatArray, t: FloatArray) -> FloatArray:
        # E[X(t)] = b/(a-1) [1 - (alpha/(alpha+t))^r 2F1(r, b+1; a+b; t/(alpha+t))]
        #         = E[1-p] * Q(r, alpha, a, b+1, t)   (the customer must survive time 0)
        r, alpha, a, b = (float(v) for v in theta)
        return np.asarray(b / (a + b) * expected_q(r, alpha, a, b + 1.0, t))
