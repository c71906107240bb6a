"""Our own live protocols: a live run from admission to storage, SSE, our WebSocket, the sessions
resource."""
