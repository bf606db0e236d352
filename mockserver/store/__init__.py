"""In-memory chat state behind one interface; knows nothing of HTTP."""

from mockserver.store.interface import ChatState
from mockserver.store.memory import ChatStore
from mockserver.store.models import AnswerSlot, ChatSession, Message, SystemPrompt, Thread, User

__all__ = ["AnswerSlot", "ChatSession", "ChatState", "ChatStore", "Message", "SystemPrompt", "Thread", "User"]
