"""The contract suite: checks any implementation of the Waldur chat API, given a base URL and tokens.

It imports nothing of the mock's internals: it speaks HTTP to a target (a URL, or an ASGI
app in-process) and judges the answers against the spec and the documented behaviour.
"""
