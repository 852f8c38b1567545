"""A request announcing a body above the limit is refused before it is read (issue 15 item 3)."""

from __future__ import annotations

import io
import socket
import time

import pytest
from django.urls import reverse

from tests.factories import TaskFactory
from webapp.core.models import Role
from webapp.core.uploads import CappedUploadHandler, UploadTooLarge

FIVE_GB = 5 * 1024**3


class UnreadableBody(io.RawIOBase):
    """wsgi.input that fails the test if anything reads from it."""

    def readable(self) -> bool:
        return True

    def read(self, *args):
        raise AssertionError("the body was read")

    readline = readinto = read


@pytest.fixture
def editor_task(client, make_member):
    user, project = make_member(Role.EDITOR)
    client.force_login(user)
    return TaskFactory(project=project)


@pytest.mark.django_db
@pytest.mark.parametrize("content_type", ["multipart/form-data; boundary=xyz", "application/json"])
def test_announced_huge_body_is_refused_unread(client, editor_task, content_type):
    page = reverse("tasks:import_upload", args=[editor_task.project_id, editor_task.pk])
    api = f"/api/v1/projects/{editor_task.project_id}/rollouts/import/"
    for url in (page, api):
        response = client.generic("POST", url, b"", content_type=content_type,
                                  CONTENT_LENGTH=str(FIVE_GB), **{"wsgi.input": UnreadableBody()})
        assert response.status_code == 413, url
        text = response.json()["detail"] if url == api else response.content.decode()
        assert "5,120.0 MB" in text and "limited to 100 MB" in text


@pytest.mark.django_db
def test_bad_content_length_is_a_400(client, editor_task):
    url = reverse("tasks:import_upload", args=[editor_task.project_id, editor_task.pk])
    response = client.generic("POST", url, b"", content_type="application/json", CONTENT_LENGTH="²")
    assert response.status_code == 400


def test_upload_handler_stops_a_file_that_streams_past_the_limit(settings):
    settings.RUBRICON_MAX_IMPORT_MB = 1
    handler = CappedUploadHandler()
    handler.new_file("file", "big.jsonl", "application/octet-stream", None)
    chunk = b"x" * (64 * 1024)
    with pytest.raises(UploadTooLarge):
        for i in range(100):
            handler.receive_data_chunk(chunk, i * len(chunk))
    assert handler.received <= 3 * 1024 * 1024


@pytest.mark.django_db(transaction=True)
def test_live_server_answers_before_a_huge_body_arrives(live_server, editor_task):
    host, port = live_server.thread.host, live_server.thread.port
    path = f"/api/v1/projects/{editor_task.project_id}/rollouts/import/"
    started = time.monotonic()
    with socket.create_connection((host, port), timeout=10) as conn:
        conn.sendall((f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                      f"Content-Length: {FIVE_GB}\r\n\r\n--b\r\n").encode())
        answer = conn.recv(65536).decode(errors="replace")
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert time.monotonic() - started < 5
