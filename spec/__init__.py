"""Makes `spec/` the package `mockserver.spec` (see pyproject.toml): the YAML here ships as package data."""
