"""A real HTTP server on 127.0.0.1 that speaks the Hugging Face Hub API endpoints huggingface_hub uses to create a
dataset repo and commit files (create repo, validate-yaml, preupload, LFS batch, LFS upload and verify, commit).
Files committed land under `root`, one folder per repo, as the Hub would serve them. Requests are recorded so tests
can see what was called.

Like the Hub, preupload answers "lfs" for a file its LFS rules track (a dataset repo's default .gitattributes patterns,
parquet among them), a binary file, or one of 10 MB or more; "regular" for the rest, whose content then travels in
the commit itself. An LFS file travels as git-lfs does it: the batch API (`{repo}.git/info/lfs/objects/batch`) hands
out upload actions, the bytes go by PUT to the storage URL it named (no Hub token: a signed URL, as S3's are), in one
part ("basic") or, past `lfs_chunk_size`, in parts completed with a POST (the Hub's "multipart"), then the verify
action; the commit only names the object (`lfsFile`: oid and size), and is refused if that object never arrived.
Xet storage (hf_xet's protocol) is not spoken: its token route answers 404."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
from fnmatch import fnmatch
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

# A dataset repo's default .gitattributes on the Hub marks these as LFS (a selection: data and archive formats).
LFS_PATTERNS = ("*.7z", "*.arrow", "*.bin", "*.bz2", "*.gz", "*.h5", "*.joblib", "*.lz4", "*.msgpack", "*.npy",
                "*.npz", "*.onnx", "*.parquet", "*.pickle", "*.pkl", "*.pt", "*.pth", "*.safetensors", "*.tar",
                "*.tflite", "*.xz", "*.zip", "*.zst", "*.mds", "*.wav", "*.mp3", "*.jpg", "*.png", "*.webp")
LFS_SIZE = 10 * 1024 * 1024


def upload_mode(path: str, size: int, sample: bytes) -> str:
    binary = b"\0" in sample
    if not binary:
        try:
            sample.decode("utf-8")
        except UnicodeDecodeError as error:
            binary = error.start < len(sample) - 3  # a cut multi-byte character at the end of the sample is text
    return "lfs" if binary or size >= LFS_SIZE or any(fnmatch(path, p) for p in LFS_PATTERNS) else "regular"


class FakeHub:
    def __init__(self, root: Path, *, token: str, lfs_chunk_size: int | None = None) -> None:
        self.root = root
        self.token = token
        self.lfs_chunk_size = lfs_chunk_size
        self.repos: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []
        self.commits: list[dict] = []
        self.upload_modes: dict[str, str] = {}  # path -> the mode preupload answered last
        self.lfs_objects: dict[str, bytes] = {}  # sha256 -> content, once uploaded (and checked)
        self.lfs_parts: dict[tuple[str, int], bytes] = {}
        self.signing_key = hashlib.sha256(token.encode() + b"storage").hexdigest()
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

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                        data += self.rfile.read(size)
                        self.rfile.readline()
                    while self.rfile.readline().strip():  # trailers, then the empty line
                        pass
                    return data
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_PUT(self) -> None:  # noqa: N802
                """The storage the batch API's upload actions point at: signed URLs, no Hub token."""
                body = self._body()
                hub.requests.append(("PUT", self.path))
                path, _, query = self.path.partition("?")
                match = re.fullmatch(r"/storage/([0-9a-f]{64})(?:/part/(\d+))?", path)
                if not match or query != f"sig={hub.sign(path)}":
                    return self._send(403, {"error": "SignatureDoesNotMatch"})
                oid, part = match.group(1), match.group(2)
                if part is not None:
                    hub.lfs_parts[(oid, int(part))] = body
                    self.send_response(200)
                    self.send_header("ETag", f'"{hashlib.md5(body).hexdigest()}"')  # noqa: S324  (S3's ETag)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                if hashlib.sha256(body).hexdigest() != oid:
                    return self._send(400, {"error": "BadDigest: the content does not match its sha256"})
                hub.lfs_objects[oid] = body
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None

            def do_POST(self) -> None:  # noqa: N802
                body = self._body()
                hub.requests.append(("POST", self.path))
                path, _, query = self.path.partition("?")
                if match := re.fullmatch(r"/lfs/([^/]+/[^/]+)/complete/([0-9a-f]{64})", path):
                    if query != f"sig={hub.sign(path)}":  # signed like the part URLs; no Hub token is sent
                        return self._send(403, {"error": "SignatureDoesNotMatch"})
                    return self._lfs_complete(match.group(2), json.loads(body))
                if self.headers.get("Authorization") != f"Bearer {hub.token}":
                    return self._send(401, {"error": "Invalid credentials in Authorization header"})
                path = self.path.split("?")[0]
                lfs = re.fullmatch(r"/datasets/([^/]+/[^/]+)\.git/info/lfs/objects/batch", path)
                if lfs:
                    return self._lfs_batch(lfs.group(1), json.loads(body))
                if match := re.fullmatch(r"/lfs/([^/]+/[^/]+)/verify/([0-9a-f]{64})", path):
                    return self._lfs_verify(match.group(2), json.loads(body))
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
                    modes = {f["path"]: upload_mode(f["path"], f["size"], base64.b64decode(f["sample"]))
                             for f in files}
                    hub.upload_modes.update(modes)
                    return self._send(200, {"files": [{"path": f["path"], "uploadMode": modes[f["path"]],
                                                       "shouldIgnore": False} for f in files]})
                return self._commit(repo_id, body)

            def _lfs_batch(self, repo_id: str, payload: dict) -> None:
                if repo_id not in hub.repos:
                    return self._send(404, {"message": "Repository not found"})
                if payload.get("operation") != "upload" or payload.get("hash_algo", "sha256") != "sha256":
                    return self._send(422, {"message": "only sha256 uploads here"})
                objects = []
                for item in payload["objects"]:
                    oid, size = item["oid"], item["size"]
                    answer: dict = {"oid": oid, "size": size, "authenticated": True}
                    if oid in hub.lfs_objects:
                        objects.append(answer)  # already stored: no actions, nothing to send
                        continue
                    verify = {"href": f"{hub.url}/lfs/{repo_id}/verify/{oid}"}
                    chunk = hub.lfs_chunk_size
                    if chunk and size > chunk and "multipart" in payload.get("transfers", []):
                        parts = -(-size // chunk)
                        header = {"chunk_size": str(chunk), **{
                            str(n): hub.signed(f"/storage/{oid}/part/{n}") for n in range(1, parts + 1)}}
                        answer["actions"] = {"upload": {"href": hub.signed(f"/lfs/{repo_id}/complete/{oid}"),
                                                        "header": header}, "verify": verify}
                    else:
                        answer["actions"] = {"upload": {"href": hub.signed(f"/storage/{oid}")}, "verify": verify}
                    objects.append(answer)
                return self._send(200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"})

            def _lfs_complete(self, oid: str, payload: dict) -> None:
                """A multipart upload's parts, put together in partNumber order, each checked by its ETag."""
                numbers = [p["partNumber"] for p in payload["parts"]]
                if payload.get("oid") != oid or numbers != list(range(1, len(numbers) + 1)):
                    return self._send(400, {"error": "parts out of order or of another object"})
                if any((oid, n) not in hub.lfs_parts for n in numbers):
                    return self._send(400, {"error": "a part was never uploaded"})
                for part, number in zip(payload["parts"], numbers, strict=True):
                    if part["etag"].strip('"') != hashlib.md5(hub.lfs_parts[(oid, number)]).hexdigest():  # noqa: S324
                        return self._send(400, {"error": f"ETag of part {number} does not match"})
                body = b"".join(hub.lfs_parts[(oid, n)] for n in numbers)
                if hashlib.sha256(body).hexdigest() != oid:
                    return self._send(400, {"error": "the parts do not add up to the object"})
                hub.lfs_objects[oid] = body
                return self._send(200, {"success": True})

            def _lfs_verify(self, oid: str, payload: dict) -> None:
                stored = hub.lfs_objects.get(oid)
                if stored is None or len(stored) != payload.get("size") or payload.get("oid") != oid:
                    return self._send(404, {"error": f"object {oid} not found or of another size"})
                return self._send(200, {"success": True})

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
                contents: dict[str, bytes] = {}
                lfs_files = []
                for line in lines[1:]:
                    value = line["value"]
                    if line["key"] == "file":
                        contents[value["path"]] = base64.b64decode(value["content"])
                    elif line["key"] == "lfsFile":
                        stored = hub.lfs_objects.get(value["oid"])
                        if value.get("algo") != "sha256" or stored is None or len(stored) != value["size"]:
                            return self._send(400, {"error": "Your push was rejected because an LFS pointer pointed "
                                                             f"to a file that does not exist: {value['path']}"})
                        contents[value["path"]] = stored
                        lfs_files.append(value["path"])
                    else:
                        return self._send(400, {"error": f"unsupported operation {line['key']}"})
                for name, content in contents.items():
                    target = hub.root / repo_id / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(content)
                    written.append(name)
                oid = hashlib.sha1(body).hexdigest()
                hub.commits.append({"repo_id": repo_id, "summary": header["value"]["summary"], "files": written,
                                    "lfs_files": lfs_files})
                return self._send(200, {"success": True, "commitOid": oid, "pullRequestUrl": None,
                                        "commitUrl": f"{hub.url}/datasets/{repo_id}/commit/{oid}"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def sign(self, path: str) -> str:
        return hmac.new(self.signing_key.encode(), path.encode(), hashlib.sha256).hexdigest()

    def signed(self, path: str) -> str:
        return f"{self.url}{path}?sig={self.sign(path)}"

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
