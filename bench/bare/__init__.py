"""A bare Django + DRF project: the ceiling bench/ceiling.py compares the tenant API with."""
