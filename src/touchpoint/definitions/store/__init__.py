"""The definition store: numbered versions of the whole definition set (interface in
`base`, one module per backend)."""
