"""Pure functions on arrays: selectivity, information, curves, correlations."""
