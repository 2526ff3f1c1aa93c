"""A local Hugging Face Hub for tests: real HTTP on 127.0.0.1, the part of the Hub API that
`huggingface_hub` uses to create a repo and upload to it, and to read it back.

Point a client at it with HF_ENDPOINT=<server.url> (read when huggingface_hub is imported, so
set it in a subprocess's environment) and HF_HUB_DISABLE_XET=1 (this server speaks the LFS
protocol, not Xet). Write requests (POST) must carry `Authorization: Bearer <token>`; the LFS
upload URL is pre-signed, as on the real Hub, so the client sends no token there.

Served (dataset and model repos alike):
  POST /api/repos/create                          create (409 when it exists)
  GET  /api/{type}s/{repo}[/revision/{rev}]       repo info (siblings, sha, private)
  POST /api/{type}s/{repo}/branch/{branch}        create a branch (409 when it exists)
  POST /api/validate-yaml                         card metadata check (always valid)
  GET  /api/{type}s/{repo}/tree/{rev}[/{path}]    list files (`recursive`)
  POST /api/{type}s/{repo}/paths-info/{rev}       info on given paths
  POST /api/{type}s/{repo}/preupload/{rev}        upload modes (*.parquet -> lfs)
  POST /{prefix}{repo}.git/info/lfs/objects/batch LFS batch: upload actions, or none when
                                                  the object is already stored
  PUT  /lfs/{oid}                                 the LFS upload (sha256 checked)
  POST /api/{type}s/{repo}/commit/{rev}           NDJSON commit (file, lfsFile, deletedFile)
  HEAD|GET /{prefix}{repo}/resolve/{rev}/{path}   file download

`fail_lfs_after = n` makes every LFS upload after the n-th answer 403 (an interrupted
upload); `requests` records (method, path, headers with lowercase names) of every request.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

_PREFIX = {"dataset": "datasets/", "space": "spaces/", "model": ""}


def _read_body(req: BaseHTTPRequestHandler) -> bytes:
    """The request body, with Content-Length or chunked (httpx streams file uploads)."""
    if req.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(req.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                req.rfile.readline()
                return b"".join(chunks)
            chunks.append(req.rfile.read(size))
            req.rfile.readline()
    length = int(req.headers.get("Content-Length") or 0)
    return req.rfile.read(length) if length else b""


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    type: str
    id: str
    private: bool
    branches: dict[str, dict[str, bytes]] = field(default_factory=lambda: {"main": {}})
    heads: dict[str, str] = field(default_factory=lambda: {"main": "0" * 40})
    commits: list[dict[str, Any]] = field(default_factory=list)

    def entry(self, path: str, data: bytes) -> dict[str, Any]:
        info: dict[str, Any] = {"type": "file", "path": path, "size": len(data)}
        if path.endswith(".parquet"):
            sha = hashlib.sha256(data).hexdigest()
            info["oid"] = git_blob_oid(sha.encode())
            info["lfs"] = {"oid": sha, "size": len(data), "pointerSize": 130}
        else:
            info["oid"] = git_blob_oid(data)
        return info


class MockHub:
    """The server; use as a context manager (see module docstring)."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.lfs_puts: list[str] = []
        self.fail_lfs_after: int | None = None
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> MockHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def repo(self, repo_id: str, repo_type: str = "dataset") -> Repo:
        return self.repos[(repo_type, repo_id)]

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "dataset") -> dict:
        """{path: bytes} of a branch (LFS files hold the uploaded content)."""
        return dict(self.repo(repo_id, repo_type).branches[revision])

    # -- request handling -------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                hub._dispatch(self, "GET")

            def do_HEAD(self) -> None:
                hub._dispatch(self, "HEAD")

            def do_POST(self) -> None:
                hub._dispatch(self, "POST")

            def do_PUT(self) -> None:
                hub._dispatch(self, "PUT")

        return Handler

    def _dispatch(self, req: BaseHTTPRequestHandler, method: str) -> None:
        parsed = urlparse(req.path)
        path, query = unquote(parsed.path), parse_qs(parsed.query)
        body = _read_body(req)
        with self._lock:
            self.requests.append((method, req.path, {k.lower(): v for k, v in req.headers.items()}))
        try:
            status, payload, headers = self._route(method, path, query, body, req.headers)
        except KeyError as exc:
            status, payload, headers = 404, {"error": f"not found: {exc}"}, {}
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        req.send_response(status)
        if not isinstance(payload, bytes):
            req.send_header("Content-Type", "application/json")
        for key, value in headers.items():
            req.send_header(key, value)
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        if method != "HEAD":
            req.wfile.write(data)

    def _authorized(self, headers: Any) -> bool:
        return headers.get("Authorization") == f"Bearer {self.token}"

    def _route(
        self, method: str, path: str, query: dict[str, list[str]], body: bytes, headers: Any
    ) -> tuple[int, Any, dict[str, str]]:
        # LFS upload URLs are pre-signed (S3 style): the client sends no token there.
        write = method == "POST" and path != "/api/validate-yaml"
        if write and not self._authorized(headers):
            return 401, {"error": "Invalid credentials in Authorization header"}, {}
        if method == "POST" and path == "/api/repos/create":
            return self._create(json.loads(body))
        if method == "POST" and path == "/api/validate-yaml":
            return 200, {"errors": [], "warnings": []}, {}
        if method == "PUT" and path.startswith("/lfs/"):
            return self._lfs_put(path.removeprefix("/lfs/"), body)
        m = re.fullmatch(r"/(datasets/|spaces/)?(.+)\.git/info/lfs/objects/batch", path)
        if m and method == "POST":
            return self._lfs_batch(json.loads(body))
        m = re.fullmatch(r"/api/(dataset|model|space)s/([^/]+/[^/]+)(/.*)?", path)
        if m:
            repo = self.repo(m[2], m[1])
            return self._api(method, repo, m[3] or "", query, body)
        m = re.fullmatch(r"/(datasets/|spaces/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if m and method in ("GET", "HEAD"):
            repo_type = {"datasets/": "dataset", "spaces/": "space"}.get(m[1] or "", "model")
            return self._resolve(self.repo(m[2], repo_type), m[3], m[4])
        return 404, {"error": f"no route for {method} {path}"}, {}

    def _create(self, payload: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload['organization']}/{payload['name']}"
        url = f"{self.url}/{_PREFIX[repo_type]}{repo_id}"
        key = (repo_type, repo_id)
        if key in self.repos:
            return 409, {"error": "You already created this repo", "url": url}, {}
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        self.repos[key] = Repo(repo_type, repo_id, private)
        return 200, {"url": url, "name": repo_id}, {}

    def _api(
        self, method: str, repo: Repo, rest: str, query: dict[str, list[str]], body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        if method == "GET" and (rest == "" or rest.startswith("/revision/")):
            revision = rest.removeprefix("/revision/") or "main"
            return 200, self._info(repo, revision), {}
        m = re.fullmatch(r"/branch/(.+)", rest)
        if m and method == "POST":
            if m[1] in repo.branches:
                return 409, {"error": "Reference already exists"}, {}
            repo.branches[m[1]] = dict(repo.branches["main"])
            repo.heads[m[1]] = repo.heads["main"]
            return 200, {}, {}
        m = re.fullmatch(r"/tree/([^/]+)(/.*)?", rest)
        if m and method == "GET":
            files = self._branch(repo, m[1])
            prefix = (m[2] or "").strip("/")
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            return 200, self._tree(repo, files, prefix, recursive), {}
        m = re.fullmatch(r"/paths-info/([^/]+)", rest)
        if m and method == "POST":
            files = self._branch(repo, m[1])
            wanted = parse_qs(body.decode()).get("paths", [])
            if not wanted and body.strip().startswith(b"{"):
                wanted = json.loads(body).get("paths", [])
            found = [repo.entry(p, files[p]) for p in wanted if p in files]
            return 200, found, {}
        m = re.fullmatch(r"/preupload/([^/]+)", rest)
        if m and method == "POST":
            files = self._branch(repo, m[1])
            out = []
            for item in json.loads(body)["files"]:
                lfs = item["path"].endswith(".parquet")
                oid = None
                if item["path"] in files:
                    data = files[item["path"]]
                    oid = hashlib.sha256(data).hexdigest() if lfs else git_blob_oid(data)
                out.append(
                    {
                        "path": item["path"],
                        "uploadMode": "lfs" if lfs else "regular",
                        "shouldIgnore": False,
                        "oid": oid,
                    }
                )
            return 200, {"files": out}, {}
        m = re.fullmatch(r"/commit/([^/]+)", rest)
        if m and method == "POST":
            return self._commit(repo, m[1], body)
        return 404, {"error": f"no route for {method} {rest}"}, {}

    def _branch(self, repo: Repo, revision: str) -> dict[str, bytes]:
        for name, head in repo.heads.items():
            if revision in (name, head):
                return repo.branches[name]
        raise KeyError(f"revision {revision}")

    def _info(self, repo: Repo, revision: str) -> dict[str, Any]:
        files = self._branch(repo, revision)
        head = next(h for n, h in repo.heads.items() if revision in (n, h))
        return {
            "id": repo.id,
            "sha": head,
            "private": repo.private,
            "siblings": [{"rfilename": p} for p in sorted(files)],
            "lastModified": "2024-01-01T00:00:00.000Z",
            "tags": [],
            "cardData": {},
        }

    def _tree(
        self, repo: Repo, files: dict[str, bytes], prefix: str, recursive: bool
    ) -> list[dict[str, Any]]:
        entries: dict[str, dict[str, Any]] = {}
        base = f"{prefix}/" if prefix else ""
        for path, data in sorted(files.items()):
            if not path.startswith(base):
                continue
            rest = path[len(base) :]
            if "/" in rest and not recursive:
                folder = base + rest.split("/")[0]
                entries[folder] = {"type": "directory", "path": folder, "oid": "0" * 40}
                continue
            if recursive:
                parts = rest.split("/")[:-1]
                for i in range(len(parts)):
                    folder = base + "/".join(parts[: i + 1])
                    entries[folder] = {"type": "directory", "path": folder, "oid": "0" * 40}
            entries[path] = repo.entry(path, data)
        return list(entries.values())

    def _lfs_batch(self, payload: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        objects = []
        for obj in payload["objects"]:
            entry: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self.lfs:
                entry["actions"] = {"upload": {"href": f"{self.url}/lfs/{obj['oid']}"}}
            objects.append(entry)
        return 200, {"transfer": "basic", "objects": objects}, {}

    def _lfs_put(self, oid: str, body: bytes) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            if self.fail_lfs_after is not None and len(self.lfs_puts) >= self.fail_lfs_after:
                return 403, {"error": "upload refused (simulated interruption)"}, {}
            if hashlib.sha256(body).hexdigest() != oid:
                return 400, {"error": "sha256 mismatch"}, {}
            self.lfs[oid] = body
            self.lfs_puts.append(oid)
        return 200, {}, {}

    def _commit(self, repo: Repo, revision: str, body: bytes) -> tuple[int, Any, dict[str, str]]:
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        branch = next(n for n, h in repo.heads.items() if revision in (n, h))
        files = dict(repo.branches[branch])
        for line in lines:
            key, value = line["key"], line["value"]
            if key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "lfsFile":
                if value["oid"] not in self.lfs:
                    return 422, {"error": f"LFS object {value['oid']} was never uploaded"}, {}
                files[value["path"]] = self.lfs[value["oid"]]
            elif key == "deletedFile":
                files.pop(value["path"], None)
            elif key == "deletedFolder":
                files = {p: d for p, d in files.items() if not p.startswith(value["path"] + "/")}
        parent = repo.heads[branch]
        oid = hashlib.sha1(f"{parent}{len(repo.commits)}{sorted(files)}".encode()).hexdigest()
        repo.branches[branch] = files
        repo.heads[branch] = oid
        header = next((line["value"] for line in lines if line["key"] == "header"), {})
        repo.commits.append({"branch": branch, "oid": oid, "summary": header.get("summary")})
        url = f"{self.url}/{_PREFIX[repo.type]}{repo.id}/commit/{oid}"
        return 200, {"commitUrl": url, "commitOid": oid, "success": True}, {}

    def _resolve(self, repo: Repo, revision: str, path: str) -> tuple[int, Any, dict[str, str]]:
        files = self._branch(repo, revision)
        if path not in files:
            return 404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"}
        data = files[path]
        head = next(h for n, h in repo.heads.items() if revision in (n, h))
        entry = repo.entry(path, data)
        etag = entry["lfs"]["oid"] if "lfs" in entry else entry["oid"]
        headers = {"ETag": f'"{etag}"', "X-Repo-Commit": head}
        if "lfs" in entry:
            headers["X-Linked-Etag"] = f'"{etag}"'
            headers["X-Linked-Size"] = str(len(data))
        return 200, data, headers
