"""Models: recommenders, purchase prediction and lifetime value, propensity, the registry.

Everything here works on plain tables (pandas frames, numpy arrays, the warehouse's
feature tables) so the same code serves the workspace's scheduled jobs, the batch
commands (`touchpoint models recommend`, `predict-purchases`) and the benchmarks.
Heavy libraries are imported by the modules that need them, never by this package.
"""
