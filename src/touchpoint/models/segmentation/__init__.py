"""Batch segment models: RFM, clusters and lifecycle stages, computed over the
warehouse and written to profiles as batch segments."""
