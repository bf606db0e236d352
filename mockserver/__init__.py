"""waldur-chat-mock: a faithful, stateful mock of Waldur's chat API and a contract suite for it."""

__version__ = "0.1.0"
