"""A real HTTP server on 127.0.0.1 that speaks the Hugging Face Hub API endpoints huggingface_hub uses to create a
dataset repo and commit files (create repo, validate-yaml, preupload, commit). Files committed land under `root`,
one folder per repo, as the Hub would serve them. Requests are recorded so tests can see what was called."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml


class FakeHub:
    def __init__(self, root: Path, *, token: str) -> None:
        self.root = root
        self.token = token
        self.repos: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []
        self.commits: list[dict] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status >= 400:
                    self.send_header("X-Error-Message", body.get("error", ""))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                hub.requests.append(("POST", self.path))
                if self.headers.get("Authorization") != f"Bearer {hub.token}":
                    return self._send(401, {"error": "Invalid credentials in Authorization header"})
                path = self.path.split("?")[0]
                if path == "/api/repos/create":
                    return self._create(json.loads(body))
                if path == "/api/validate-yaml":
                    return self._validate_yaml(json.loads(body))
                match = re.fullmatch(r"/api/datasets/([^/]+/[^/]+)/(preupload|commit)/([^/]+)", path)
                if not match:
                    return self._send(404, {"error": f"no route {path}"})
                repo_id, what, _revision = match.groups()
                if repo_id not in hub.repos:
                    return self._send(404, {"error": "Repository not found"})
                if what == "preupload":
                    files = json.loads(body)["files"]
                    return self._send(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                       "shouldIgnore": False} for f in files]})
                return self._commit(repo_id, body)

            def do_GET(self) -> None:  # noqa: N802
                hub.requests.append(("GET", self.path))
                self._send(404, {"error": "not served by this test hub"})

            def _create(self, payload: dict) -> None:
                if payload.get("type") != "dataset":
                    return self._send(400, {"error": "only dataset repos here"})
                repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else \
                    payload["name"]
                if repo_id in hub.repos:
                    return self._send(409, {"error": "You already created this dataset repo",
                                            "url": f"{hub.url}/datasets/{repo_id}"})
                hub.repos[repo_id] = {"visibility": payload.get("visibility"), "type": payload["type"]}
                return self._send(200, {"url": f"{hub.url}/datasets/{repo_id}", "name": repo_id})

            def _validate_yaml(self, payload: dict) -> None:
                content = payload["content"]
                match = re.match(r"^---\n(.*?)\n---\n", content, re.S)
                try:
                    yaml.safe_load(match.group(1) if match else "")
                except yaml.YAMLError as error:
                    return self._send(400, {"errors": [{"message": str(error)}], "warnings": []})
                return self._send(200, {"errors": [], "warnings": []})

            def _commit(self, repo_id: str, body: bytes) -> None:
                lines = [json.loads(line) for line in body.splitlines() if line.strip()]
                header = lines[0]
                assert header["key"] == "header", header
                written = []
                for line in lines[1:]:
                    if line["key"] != "file":
                        return self._send(400, {"error": f"unsupported operation {line['key']}"})
                    target = hub.root / repo_id / line["value"]["path"]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(base64.b64decode(line["value"]["content"]))
                    written.append(line["value"]["path"])
                oid = hashlib.sha1(body).hexdigest()
                hub.commits.append({"repo_id": repo_id, "summary": header["value"]["summary"], "files": written})
                return self._send(200, {"success": True, "commitOid": oid, "pullRequestUrl": None,
                                        "commitUrl": f"{hub.url}/datasets/{repo_id}/commit/{oid}"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
