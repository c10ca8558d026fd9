"""K-Means clusters of customers on log-scaled, standardised R/F/M (and predictions)."""
