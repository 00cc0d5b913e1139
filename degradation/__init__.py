"""Degradation: the parts that keep the platform answering when a dependency is down."""
