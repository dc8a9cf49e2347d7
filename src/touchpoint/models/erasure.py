"""Erasure in the model registry: stored models forget the people erased.

Of the artifacts `touchpoint train` stores, only recommenders keep people: the ids they
learned from, each with their row of training history (and, for some, a vector or a group
of their own), so that a person the model knows is served from that history. An erased
person's profile id must not stay in those files, in any version (serving, retired or
rejected), so each is rewritten without them (`Recommender.forget`). Segment and score
models keep only aggregates (centres, thresholds, fitted parameters); their drift samples
keep feature values without profile ids (see models.training).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from pathlib import Path

from touchpoint.core.errors import InvalidInput
from touchpoint.models.registry import ModelRegistry

logger = logging.getLogger(__name__)


def forget_people(registry: ModelRegistry, people: Collection[str]) -> int:
    """Rewrite every stored version of every recommender that knows one of `people`
    (profile ids) without them; how many versions were rewritten."""
    wanted = frozenset(people)
    if not wanted:
        return 0
    rewritten = 0
    for model in registry.models():
        for version in registry.versions(model):

            def save(current: Path, staging: Path) -> bool:
                return _forget_in(current, staging, wanted)

            if registry.rewrite(model, version.version, save):
                rewritten += 1
    if rewritten:
        logger.info("erasure rewrote %d model versions", rewritten)
    return rewritten


def _forget_in(current: Path, staging: Path, people: frozenset[str]) -> bool:
    """Save the recommender in `current` without `people` into `staging`; False if
    `current` holds no recommender or it knew none of them."""
    from touchpoint.models.recommend.catalog import RECOMMENDERS, load_recommender
    from touchpoint.models.recommend.scoring import read_model_file

    try:
        body = read_model_file(current)
    except InvalidInput:
        return False  # not a recommender (no model.json, or another kind of model)
    if body["class"] not in RECOMMENDERS:
        return False
    recommender = load_recommender(current)
    if not recommender.forget(people):
        return False
    recommender.save(staging)
    return True
