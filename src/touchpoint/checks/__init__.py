"""Behaviour checks every policy and every scorer must pass, as River's `checks/` runs the
same checks on every estimator: `policies` and `scorers`. Each check raises AssertionError
naming what failed; the tests run them over every registered policy and scorer."""
