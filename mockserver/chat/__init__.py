"""Chat domain: the rules of section 2-4 of the server notes, free of HTTP and of Starlette."""
