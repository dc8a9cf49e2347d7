"""Recommenders by name: what `--model NAME`, the registry and config refer to.

`build_recommender("ease", regularization=300)` makes an unfitted model;
`load_recommender(directory)` rebuilds whichever model a directory holds (its `model.json`
names the class). `DEFAULT_RECOMMENDER` is the model that wins the MovieLens 100k bench
(bench/movielens.py): `blend`, whose defaults are the parameters chosen there on
validation splits of the training data.

`session` wraps two others: `build_recommender("session", base="ease",
similarity="cooccurrence")` (names or built models; `similarity` defaults to the base).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from touchpoint.core.errors import InvalidInput
from touchpoint.models.recommend.als import ImplicitALS
from touchpoint.models.recommend.base import Recommender
from touchpoint.models.recommend.blend import Blend
from touchpoint.models.recommend.content import ContentBased
from touchpoint.models.recommend.cooccurrence import CoOccurrence
from touchpoint.models.recommend.ease import EASE
from touchpoint.models.recommend.popular import MostPopular
from touchpoint.models.recommend.scoring import read_model_file
from touchpoint.models.recommend.session import SessionRerank

RECOMMENDERS: dict[str, type[Recommender]] = {
    "popular": MostPopular,
    "cooccurrence": CoOccurrence,
    "ease": EASE,
    "als": ImplicitALS,
    "content": ContentBased,
    "blend": Blend,
    "session": SessionRerank,
}

DEFAULT_RECOMMENDER = "blend"


def build_recommender(name: str, **params: Any) -> Recommender:
    """An unfitted recommender by name; unknown names and parameters are `InvalidInput`
    naming them."""
    model_class = RECOMMENDERS.get(name)
    if model_class is None:
        raise InvalidInput(
            f"unknown recommender {name!r}; choose one of {', '.join(sorted(RECOMMENDERS))}",
            details={"field": "model"},
        )
    if model_class is SessionRerank:
        base = _component(params.pop("base", DEFAULT_RECOMMENDER), params.get("seed", 0))
        similarity = params.pop("similarity", None)
        if similarity is not None:
            similarity = _component(similarity, params.get("seed", 0))
        return _construct(name, lambda: SessionRerank(base, similarity, **params), params)
    return _construct(name, lambda: model_class(**params), params)


def _component(value: Any, seed: int) -> Recommender:
    if isinstance(value, str):
        return build_recommender(value, seed=seed)
    if isinstance(value, Recommender):
        return value
    raise InvalidInput(
        "session base and similarity must be recommender names or models",
        details={"field": "base"},
    )


def _construct(name: str, make: Any, params: dict[str, Any]) -> Recommender:
    try:
        model: Recommender = make()
    except TypeError as error:
        raise InvalidInput(
            f"{name}: bad parameters {sorted(params)}: {error}", details={"field": "params"}
        ) from error
    return model


def load_recommender(directory: Path) -> Recommender:
    """Whatever recommender `directory` holds (saved by its `save`)."""
    body = read_model_file(directory)
    model_class = RECOMMENDERS.get(body["class"])
    if model_class is None:
        raise InvalidInput(
            f"{directory} holds an unknown recommender {body['class']!r}",
            details={"field": "class"},
        )
    return model_class.load(directory)
