"""The audit log: an append-only record of who changed what (definitions applied,
people erased or exported), one interface and a backend per technology."""
