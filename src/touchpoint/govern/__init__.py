"""Governance: consent, erasure, export, the audit log."""
