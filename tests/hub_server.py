"""A loopback stand-in for the Hugging Face Hub, speaking just enough of its HTTP protocol for mrsynth's tests.

Why a real HTTP server and not mocks: the point of the tests is that ``hf_hub_download`` and ``HfApi`` (their
URL building, headers, cache layout, offline fallback, NDJSON commits) really work against what mrsynth does,
so the only fake is the far end. Implemented (models only, regular non-LFS files, no redirects):

- ``HEAD|GET /{owner}/{name}/resolve/{revision}/{path}`` with ``ETag`` (git blob sha), ``X-Repo-Commit`` and
  ``Content-Length``; ``X-Error-Code`` RepoNotFound / RevisionNotFound / EntryNotFound on 404, as the Hub does;
- ``POST /api/repos/create``, ``/api/validate-yaml``, ``/api/models/{repo}/preupload/{rev}``,
  ``/api/models/{repo}/commit/{rev}`` (NDJSON with base64 file contents), ``/api/models/{repo}/branch/{b}``.

It binds 127.0.0.1 only, answers from memory, records every request, and stops itself after ``lifetime_s``.
``write_checkpoint`` and ``write_registry`` at the end make the small checkpoints and registries the tests serve.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit


def git_blob_sha(content: bytes) -> str:
    """The ETag the Hub gives a regular (non-LFS) file: its git blob sha1."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


class LoopbackHub:
    """In-memory Hub: repos -> branches -> commits -> {path: bytes}. Use as a context manager."""

    def __init__(self, lifetime_s: float = 60.0, write_token: str | None = None) -> None:
        self.lifetime_s = lifetime_s
        self.write_token = write_token
        self.requests: list[dict[str, Any]] = []
        self._repos: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._stopped = threading.Event()
        self.endpoint = ""

    # ----- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> "LoopbackHub":
        hub = self

        class Handler(_Handler):
            owner = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        host, port = self._server.server_address[:2]
        assert host == "127.0.0.1"
        self.endpoint = f"http://127.0.0.1:{port}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        timer = threading.Timer(self.lifetime_s, self.stop)
        timer.daemon = True
        timer.start()
        return self

    def stop(self) -> None:
        if self._server is None or self._stopped.is_set():
            return
        self._stopped.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "LoopbackHub":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----- repository state ------------------------------------------------------------------------------
    def create_repo(self, repo_id: str, private: bool = False) -> bool:
        """Create an empty repo with an initial commit; False when it already exists."""
        with self._lock:
            if repo_id in self._repos:
                return False
            self._repos[repo_id] = {"private": private, "refs": {}, "commits": {}}
            self._new_commit(repo_id, "main", {}, parent=None)
            return True

    def commit(self, repo_id: str, files: dict[str, bytes], branch: str = "main") -> str:
        """Add or replace files on a branch; returns the new 40-hex commit sha (creates the repo if needed)."""
        self.create_repo(repo_id)
        with self._lock:
            repo = self._repos[repo_id]
            parent = repo["refs"][branch]
            return self._new_commit(repo_id, branch, {**repo["commits"][parent], **files}, parent)

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        with self._lock:
            repo = self._repos[repo_id]
            return dict(repo["commits"][repo["refs"].get(revision, revision)])

    def repo(self, repo_id: str) -> dict[str, Any]:
        with self._lock:
            return self._repos[repo_id]

    def _new_commit(self, repo_id: str, branch: str, tree: dict[str, bytes], parent: str | None) -> str:
        repo = self._repos[repo_id]
        digest = hashlib.sha1(f"{repo_id}\0{parent}\0{len(repo['commits'])}".encode())
        for path in sorted(tree):
            digest.update(f"{path}\0{git_blob_sha(tree[path])}".encode())
        sha = digest.hexdigest()
        repo["commits"][sha] = tree
        repo["refs"][branch] = sha
        return sha


class _Handler(BaseHTTPRequestHandler):
    owner: LoopbackHub

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass

    # ----- helpers ---------------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              head_only: bool = False) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and not head_only:
            self.wfile.write(body)

    def _json(self, status: int, data: Any, error_code: str | None = None) -> None:
        headers = {"Content-Type": "application/json"}
        if error_code:
            headers |= {"X-Error-Code": error_code, "X-Error-Message": str(data.get("error", ""))}
        self._send(status, json.dumps(data).encode(), headers)

    def _record(self) -> list[str]:
        """Log the request and return its URL-decoded path segments."""
        split = urlsplit(self.path)
        self.owner.requests.append({"method": self.command, "path": split.path,
                                    "authorization": self.headers.get("authorization")})
        return [unquote(p) for p in split.path.split("/")[1:]]

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _authorized(self) -> bool:
        token = self.owner.write_token
        if token is None or self.headers.get("authorization") == f"Bearer {token}":
            return True
        self._json(401, {"error": "Invalid credentials in Authorization header"})
        return False

    # ----- downloads -------------------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self._resolve(head_only=True)

    def do_GET(self) -> None:
        self._resolve(head_only=False)

    def _resolve(self, head_only: bool) -> None:
        parts = self._record()
        if len(parts) < 5 or parts[2] != "resolve":
            self._send(404, b"not found", head_only=head_only)
            return
        repo_id, revision, path = f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:])
        with self.owner._lock:
            repo = self.owner._repos.get(repo_id)
            commits = {} if repo is None else {**{c: c for c in repo["commits"]}, **repo["refs"]}
            commit = commits.get(revision)
            content = None if commit is None else repo["commits"][commit].get(path)
        if repo is None:
            headers = {"X-Error-Code": "RepoNotFound"}
        elif commit is None:
            headers = {"X-Error-Code": "RevisionNotFound"}
        elif content is None:
            headers = {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit}
        else:
            self._send(200, content, {"ETag": f'"{git_blob_sha(content)}"', "X-Repo-Commit": commit,
                                      "Content-Type": "application/octet-stream"}, head_only=head_only)
            return
        self._send(404, b"", headers, head_only=head_only)

    # ----- uploads ---------------------------------------------------------------------------------------
    def do_POST(self) -> None:
        parts = self._record()
        body = self._body()
        if parts == ["api", "validate-yaml"]:
            self._json(200, {"errors": [], "warnings": []})
            return
        if not self._authorized():
            return
        if parts == ["api", "repos", "create"]:
            payload = json.loads(body)
            repo_id = f"{payload['organization']}/{payload['name']}"
            private = payload.get("private") or payload.get("visibility") == "private"
            if self.owner.create_repo(repo_id, private=bool(private)):
                self._json(200, {"url": f"{self.owner.endpoint}/{repo_id}", "name": repo_id})
            else:
                self._json(409, {"error": "You already created this model repo",
                                 "url": f"{self.owner.endpoint}/{repo_id}"})
            return
        if len(parts) >= 6 and parts[:2] == ["api", "models"]:
            repo_id, action, revision = f"{parts[2]}/{parts[3]}", parts[4], "/".join(parts[5:])
            with self.owner._lock:
                repo = self.owner._repos.get(repo_id)
            if repo is None:
                self._json(404, {"error": "Repository not found"}, "RepoNotFound")
            elif action == "preupload":
                self._preupload(repo, revision, json.loads(body))
            elif action == "commit":
                self._commit(repo_id, repo, revision, body)
            elif action == "branch":
                self._branch(repo, revision, json.loads(body or b"{}"))
            else:
                self._json(404, {"error": f"unknown action {action}"})
            return
        self._json(404, {"error": "not implemented by the loopback hub"})

    def _preupload(self, repo: dict[str, Any], revision: str, payload: dict[str, Any]) -> None:
        tree = repo["commits"].get(repo["refs"].get(revision, ""), {})
        files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                  "oid": git_blob_sha(tree[f["path"]]) if f["path"] in tree else None} for f in payload["files"]]
        self._json(200, {"files": files, "commitOid": repo["refs"].get(revision)})

    def _commit(self, repo_id: str, repo: dict[str, Any], revision: str, body: bytes) -> None:
        if revision not in repo["refs"]:
            self._json(404, {"error": f"Invalid rev id: {revision}"}, "RevisionNotFound")
            return
        files: dict[str, bytes] = {}
        for line in body.splitlines():
            item = json.loads(line)
            if item["key"] == "file":
                files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            elif item["key"] != "header":
                self._json(400, {"error": f"{item['key']} is not supported by the loopback hub"})
                return
        sha = self.owner.commit(repo_id, files, branch=revision)
        self._json(200, {"commitUrl": f"{self.owner.endpoint}/{repo_id}/commit/{sha}", "commitOid": sha,
                         "success": True, "pullRequestUrl": None})

    def _branch(self, repo: dict[str, Any], branch: str, payload: dict[str, Any]) -> None:
        with self.owner._lock:
            if branch in repo["refs"]:
                self._json(409, {"error": "Reference already exists"})
                return
            start = payload.get("startingPoint") or "main"
            repo["refs"][branch] = repo["refs"].get(start, start)
        self._json(200, {})


# ----- test data shared by test_hub.py and test_cli_models.py ---------------------------------------------------
def write_checkpoint(path: Path, seed: int = 0, **meta: Any) -> Path:
    """A small, valid mrsynth checkpoint written without torch (seeded random weights, real metadata schema)."""
    import numpy as np
    from safetensors.numpy import save_file

    from mrsynth.checkpoint import METADATA_KEY, default_normalization

    rng = np.random.default_rng(seed)
    record = {"format": 1, "mrsynth_version": "0.1.0", "model": {"arch": "agi-net", "in_channels": 2},
              "scenario": {"inputs": ["t1", "t2"], "target": "pd"}, "normalization": default_normalization(),
              "slice_size": [64, 64], "voxel_size_mm": [1.0, 1.0, 1.0], "skull_stripped": False,
              "training": {"dataset": "IXI", "licence": "CC-BY-SA-3.0"}, "dtype": "float32", **meta}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"w": rng.standard_normal((48, 48)).astype(np.float32)}, str(path),
              metadata={METADATA_KEY: json.dumps(record)})
    return path


def write_registry(weights: Path, entries: list[dict[str, Any]]) -> Path:
    """weights/registry.toml with one [[model]] table per entry (scalars and one level of inline tables)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return json.dumps(v)  # str (JSON escapes are valid TOML basic strings), int, float

    weights.mkdir(parents=True, exist_ok=True)
    text = "".join("[[model]]\n" + "".join(f"{k} = {value(v)}\n" for k, v in e.items()) + "\n" for e in entries)
    path = weights / "registry.toml"
    path.write_text(text, encoding="utf-8")
    return path
