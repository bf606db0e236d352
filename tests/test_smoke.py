def test_new_thread_stream_then_lists(clients):
    result = clients.alice.stream(input="Hi")
    assert result.status_code == 200
    assert result.response.headers["content-type"] == "application/x-ndjson"
    threads = clients.alice.get("/api/chat-threads/").json()
    assert [t["uuid"] for t in threads] == [result.thread_uuid]
