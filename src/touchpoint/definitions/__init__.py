"""Versioned definitions: what a workspace decides with (placements and content today;
experiments, campaigns, journeys and webhook endpoints next), one schema module per kind,
validated whole, stored as numbered versions and applied all or nothing."""
