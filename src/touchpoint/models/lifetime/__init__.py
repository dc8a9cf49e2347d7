"""Expected purchases and lifetime value: from a table of purchases (person, date, amount).

`summary` turns purchases into the per-person repeat-purchase summary the models read
(frequency, recency, age, mean spend); `bgnbd` and `pareto_nbd` model how often people
buy and whether they are still active; `gamma_gamma` models how much they spend;
`boosted` (with `features`) corrects them with gradient boosting learned and validated
inside the observed period;
`batch` is `touchpoint models predict-purchases`.
"""
