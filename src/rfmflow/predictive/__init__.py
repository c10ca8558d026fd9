"""Buy-till-you-die models (BG/NBD, Pareto/NBD, MBG/NBD) and the Gamma-Gamma spend model.

Maximum-likelihood fits with numpy and scipy, validated against the published CDNOW
estimates. The purchase models take, per customer and in one stated time unit:

* ``x``   repeat purchases (purchase occasions after the first),
* ``t_x`` time of the last purchase since the first (0 when x == 0),
* ``T``   age: time from the first purchase to the end of observation.

>>> from rfmflow.predictive import BGNBD, GammaGamma, customer_lifetime_value
>>> m = BGNBD(time_unit="weeks").fit(x, t_x, T)                       # doctest: +SKIP
>>> m.p_alive(x, t_x, T); m.expected_purchases(13, x, t_x, T)         # doctest: +SKIP
>>> gg = GammaGamma().fit(x[x > 0], m_x[x > 0])                       # doctest: +SKIP
>>> customer_lifetime_value(m, gg.expected_spend(x, m_x), x, t_x, T,
...                         horizon=52, annual_discount_rate=0.1)      # doctest: +SKIP
"""

from rfmflow.predictive._base import FittedModel, PurchaseModel
from rfmflow.predictive.bgnbd import BGNBD
from rfmflow.predictive.clv import customer_lifetime_value, days_per_time_unit
from rfmflow.predictive.gamma_gamma import GammaGamma
from rfmflow.predictive.mbgnbd import MBGNBD
from rfmflow.predictive.pareto_nbd import ParetoNBD
from rfmflow.predictive.persistence import PURCHASE_MODELS, load_model

__all__ = [
    "BGNBD",
    "MBGNBD",
    "PURCHASE_MODELS",
    "FittedModel",
    "GammaGamma",
    "ParetoNBD",
    "PurchaseModel",
    "customer_lifetime_value",
    "days_per_time_unit",
    "load_model",
]
