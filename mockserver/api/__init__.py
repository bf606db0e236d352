"""The Waldur chat API over HTTP: routing, authentication and the twelve operations."""
