"""The HTTP API's models: what each route takes and what it answers, one module per area.

Routers declare these (`response_model`, `responses`, documented request bodies) so the
OpenAPI document is the server's real contract; the areas' own types stay free of HTTP.
Input models reject unknown fields where the server does; output models name every field
the server sends.
"""
