"""The upstream-LLM mode: the reply scripts served as the LLM backend a real Waldur calls.

`app` serves LangServe's `/stream` and OpenAI-compatible Chat Completions from the upstream
stage's timed events (`calls` reads what Waldur sent, `replies` plans, `langserve` and
`openai_sse` are the protocol adapters); `client` is the other direction, the chat API's
upstream stage as an HTTP client of a real LLM (`serve --upstream-url`).
"""
