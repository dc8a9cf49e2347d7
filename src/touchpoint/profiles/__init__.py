"""Profiles: the identity graph, the profile store and its backends (`store/`, whose
`base.py` holds the interface and the factory `build_profile_store`), and the profile view."""

from __future__ import annotations

from touchpoint.core.pages import Page
from touchpoint.profiles.identity import IdentityResolver, Resolution, SkippedIdentity
from touchpoint.profiles.model import Identity, MergeRecord, Profile
from touchpoint.profiles.store.base import ProfileStore, ProfileWriter, SegmentChange, TimelineEvent
from touchpoint.profiles.view import profile_document

__all__ = [
    "Identity",
    "IdentityResolver",
    "MergeRecord",
    "Page",
    "Profile",
    "ProfileStore",
    "ProfileWriter",
    "Resolution",
    "SegmentChange",
    "SkippedIdentity",
    "TimelineEvent",
    "profile_document",
]
