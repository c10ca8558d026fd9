"""The BG/NBD model (beta-geometric / negative binomial distribution).

Fader, P. S., Hardie, B. G. S. & Lee, K. L. (2005). "Counting Your Customers" the Easy Way:
An Alternative to the Pareto/NBD Model. Marketing Science 24(2), 275-284.

Assumptions:

1. While active, a customer's purchases follow a Poisson process with rate lambda.
2. lambda varies across customers as Gamma(shape r, rate alpha).
3. After any *repeat* purchase the customer becomes inactive ("dies") with probability p.
4. p varies across customers as Beta(a, b).
5. lambda and p are independent across customers.

Inputs per customer, in the model's time unit (``time_unit``, "weeks" by default):
``x`` repeat purchases (purchase occasions after the first), ``t_x`` time of the last
purchase since the first (0 when x == 0), ``T`` age: time from the first purchase to the end
of observation. Parameters, in the paper's order: r, alpha, a, b.
"""

from __future__ import annotations

from rfmflow.predictive._beta_geometric import BetaGeometricModel


class BGNBD(BetaGeometricModel):
    """BG/NBD (Fader, Hardie & Lee 2005): Poisson purchases at a Gamma-distributed rate,
    geometric dropout after each repeat purchase with a Beta-distributed probability.

    >>> m = BGNBD(time_unit="weeks").fit(x, t_x, T)   # doctest: +SKIP
    >>> m.params_                                      # doctest: +SKIP
    {'r': 0.2426, 'alpha': 4.4136, 'a': 0.7929, 'b': 2.4259}
    """

    name = "bgnbd"
    label = "BG/NBD"
    param_names = ("r", "alpha", "a", "b")
    _shift = 0
