"""Deciding what each placement shows: definitions, eligibility, policies, caps, the
decision log and the outcomes joined to it."""
