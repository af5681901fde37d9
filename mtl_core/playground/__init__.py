"""The gradient playground: every weighting method's path on the MTL papers' two-parameter toys."""
