"""Recommenders: one protocol (`base.Recommender`), several models."""
