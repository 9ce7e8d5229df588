"""A small Hugging Face Hub compatible HTTP server for tests (stdlib only).

It answers the part of the Hub API that `huggingface_hub` and `transformers` use to push and
load models, so `push_to_hub`, `upload_folder`, `snapshot_download`, `hf_hub_download` and
`from_pretrained("user/repo")` work without internet:

    POST /api/repos/create                       create a repo (409 when it exists)
    POST /api/repos/delete                       delete a repo
    GET  /api/whoami-v2                          the (single, fake) user behind any token
    POST /api/validate-yaml                      README front matter must be a YAML mapping
    GET  /api/{type}s/{ns}/{name}[/revision/R]   repo info (sha, siblings, cardData, ...)
    POST /api/{type}s/{ns}/{name}/preupload/R    every file is "regular" (no LFS / Xet)
    POST /api/{type}s/{ns}/{name}/commit/R       NDJSON: header, file (base64), deletedFile, deletedFolder
    GET  /api/{type}s/{ns}/{name}/tree/R[/path]  tree listing (recursive or not)
    POST /api/{type}s/{ns}/{name}/paths-info/R   info on some paths
    GET  /api/{type}s/{ns}/{name}/commits/R      commit history, newest first
    GET  /api/{type}s/{ns}/{name}/refs           branches
    POST /api/{type}s/{ns}/{name}/branch/B       create a branch
    HEAD/GET /[{type}s/]{ns}/{name}/resolve/R/path   file content with ETag, X-Repo-Commit, Content-Length

Repos live in memory (commits, refs, trees); file contents are stored once, by sha256, in a
folder on disk. Every commit gets a sha1 id; a commit that changes nothing creates no new
commit (the head stays where it is). Files are served with the sha256 of their content as
ETag; tree listings give the git blob sha1 as `oid`, as the Hub does for regular files, which
is what huggingface_hub compares to skip unchanged files.

Errors carry the headers huggingface_hub maps to exceptions: `X-Error-Code: RepoNotFound`,
`RevisionNotFound` or `EntryNotFound`.

Usage:
    server = HubServer(storage_dir)   # or HubServer() for a temporary folder
    server.start()                    # background thread, free port on 127.0.0.1
    server.endpoint                   # "http://127.0.0.1:PORT"
    server.stop()
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from hub_state import DEFAULT_USER, REPO_TYPES, HubError, HubState, Repo, file_entry, folder_entry, tree_folders, \
    front_matter


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LocalHub/0.1"
    state: HubState  # set on the subclass made by HubServer

    def log_message(self, format, *args):  # noqa: A002 - silence the default stderr log
        if os.environ.get("LOCAL_HUB_VERBOSE"):
            super().log_message(format, *args)

    # --- plumbing ------------------------------------------------------------------------
    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json_body(self):
        raw = self._body()
        return json.loads(raw) if raw else {}

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False):
        self.send_response(status)
        headers = dict(headers or {})
        headers.setdefault("Content-Type", "application/json")
        headers["Content-Length"] = str(len(body)) if "Content-Length" not in headers else headers["Content-Length"]
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def _send_json(self, payload, status: int = 200, headers: dict | None = None):
        self._send(status, json.dumps(payload).encode(), headers)

    def _dispatch(self, method: str):
        try:
            parts = urlsplit(self.path)
            segments = [unquote(s) for s in parts.path.split("/") if s != ""]
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            self._route(method, segments, query)
        except HubError as err:
            headers = {"X-Error-Message": err.message}
            if err.code:
                headers["X-Error-Code"] = err.code
            body = json.dumps({"error": err.message}).encode()
            self._send(err.status, body, headers, head=(method == "HEAD"))
        except Exception as err:  # keep the server alive and tell the client what broke
            self._send(500, json.dumps({"error": f"{type(err).__name__}: {err}"}).encode(), head=(method == "HEAD"))

    def do_GET(self):  # noqa: N802
        self._dispatch("GET")

    def do_HEAD(self):  # noqa: N802
        self._dispatch("HEAD")

    def do_POST(self):  # noqa: N802
        self._dispatch("POST")

    def do_DELETE(self):  # noqa: N802
        self._dispatch("DELETE")

    def do_PUT(self):  # noqa: N802
        self._dispatch("PUT")

    @property
    def endpoint(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    # --- routing -------------------------------------------------------------------------
    def _route(self, method: str, seg: list[str], query: dict):
        st = self.state
        if seg[:1] == ["api"]:
            rest = seg[1:]
            if rest == ["whoami-v2"] and method == "GET":
                return self._send_json(self._whoami())
            if rest == ["validate-yaml"] and method == "POST":
                return self._validate_yaml(self._json_body())
            if rest == ["repos", "create"] and method == "POST":
                return self._create_repo(self._json_body())
            if rest == ["repos", "delete"] and method in ("POST", "DELETE"):
                body = self._json_body()
                repo_id = f"{body.get('organization') or st.user}/{body['name']}"
                with st.lock:
                    st.get_repo(body.get("type") or "model", repo_id)
                    del st.repos[(body.get("type") or "model", repo_id)]
                return self._send_json({})
            if len(rest) >= 3 and rest[0] in REPO_TYPES:
                repo_type, repo_id, tail = REPO_TYPES[rest[0]], f"{rest[1]}/{rest[2]}", rest[3:]
                with st.lock:
                    repo = st.get_repo(repo_type, repo_id)
                return self._repo_api(method, repo, tail, query)
            raise HubError(404, f"Unknown API route: /{'/'.join(seg)}")
        # file download: [datasets|spaces/]ns/name/resolve/revision/path...
        repo_type = "model"
        if seg and seg[0] in ("datasets", "spaces"):
            repo_type, seg = REPO_TYPES[seg[0]], seg[1:]
        if len(seg) >= 5 and seg[2] == "resolve" and method in ("GET", "HEAD"):
            with st.lock:
                repo = st.get_repo(repo_type, f"{seg[0]}/{seg[1]}")
                commit = repo.resolve(seg[3])
            return self._resolve(method, repo, commit, "/".join(seg[4:]))
        raise HubError(404, f"Not found: /{'/'.join(seg)}")

    def _whoami(self) -> dict:
        return {
            "type": "user",
            "id": "0" * 24,
            "name": self.state.user,
            "fullname": "Local Hub Tester",
            "email": None,
            "orgs": [],
            "auth": {"type": "access_token", "accessToken": {"displayName": "local", "role": "write"}},
        }

    def _validate_yaml(self, body: dict):
        text = front_matter(body.get("content") or "")
        if text is None:
            return self._send_json({"errors": [], "warnings": [{"message": "Empty or missing yaml metadata in repo card"}]})
        try:
            import yaml  # a dependency of huggingface_hub

            data = yaml.safe_load(text)
        except ImportError:
            data = {}
        except Exception as err:
            return self._send_json({"errors": [{"message": f"Invalid YAML: {err}"}]}, status=400)
        if data is not None and not isinstance(data, dict):
            return self._send_json({"errors": [{"message": "YAML metadata must be a mapping"}]}, status=400)
        return self._send_json({"errors": [], "warnings": []})

    def _create_repo(self, body: dict):
        namespace = body.get("organization") or self.state.user
        repo_type = body.get("type") or "model"
        repo_id = f"{namespace}/{body['name']}"
        private = bool(body.get("private")) or body.get("visibility") == "private"
        url = self._repo_url(repo_type, repo_id)
        try:
            self.state.create_repo(repo_type, repo_id, private)
        except HubError as err:
            if err.status == 409:
                return self._send_json({"error": err.message, "url": url}, status=409)
            raise
        return self._send_json({"url": url, "name": repo_id, "id": repo_id})

    def _repo_url(self, repo_type: str, repo_id: str) -> str:
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        return f"{self.endpoint}/{prefix}{repo_id}"

    def _repo_api(self, method: str, repo: Repo, tail: list[str], query: dict):
        st = self.state
        if method == "GET" and (not tail or tail[0] == "revision"):
            with st.lock:
                commit = repo.resolve(tail[1] if len(tail) > 1 else "main")
            return self._send_json(self._info(repo, commit, blobs=query.get("blobs") in ("1", "True", "true")))
        if method == "POST" and tail[:1] == ["preupload"]:
            return self._preupload(repo, tail[1] if len(tail) > 1 else "main", self._json_body())
        if method == "POST" and tail[:1] == ["commit"]:
            return self._commit(repo, tail[1] if len(tail) > 1 else "main", query)
        if method == "GET" and tail[:1] == ["tree"]:
            with st.lock:
                commit = repo.resolve(tail[1] if len(tail) > 1 else "main")
            recursive = query.get("recursive", "false").lower() in ("1", "true")
            return self._send_json(self._tree(commit["tree"], "/".join(tail[2:]), recursive))
        if method == "POST" and tail[:1] == ["paths-info"]:
            with st.lock:
                commit = repo.resolve(tail[1] if len(tail) > 1 else "main")
            return self._paths_info(commit["tree"])
        if method == "GET" and tail[:1] == ["commits"]:
            with st.lock:
                commit = repo.resolve(tail[1] if len(tail) > 1 else "main")
                history = repo.history(commit)
            return self._send_json(
                [
                    {"id": c["id"], "title": c["title"], "message": c["message"], "date": c["date"],
                     "authors": [{"user": st.user}]}
                    for c in history
                ]
            )
        if method == "GET" and tail == ["refs"]:
            with st.lock:
                branches = [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": o} for n, o in repo.refs.items()]
            return self._send_json({"branches": branches, "tags": [], "converts": [], "pullRequests": []})
        if method == "POST" and tail[:1] == ["branch"] and len(tail) == 2:
            body = self._json_body()
            with st.lock:
                if tail[1] in repo.refs:
                    raise HubError(409, f"Reference already exists: refs/heads/{tail[1]}")
                repo.refs[tail[1]] = repo.resolve(body.get("startingPoint") or "main")["id"]
            return self._send_json({})
        raise HubError(404, f"Unknown repo route: {method} {'/'.join(tail)}")

    def _info(self, repo: Repo, commit: dict, blobs: bool) -> dict:
        siblings = []
        for path, blob in sorted(commit["tree"].items()):
            entry = {"rfilename": path}
            if blobs:
                entry.update(size=blob["size"], blobId=blob["oid"])
            siblings.append(entry)
        card = {}
        if "README.md" in commit["tree"]:
            text = front_matter(self.state.read_blob(commit["tree"]["README.md"]).decode("utf-8", "replace"))
            try:
                import yaml

                card = yaml.safe_load(text) if text else {}
            except Exception:
                card = {}
            card = card if isinstance(card, dict) else {}
        namespace = repo.repo_id.split("/")[0]
        info = {
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "author": namespace,
            "sha": commit["id"],
            "lastModified": commit["date"],
            "createdAt": repo.created_at,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": list(card.get("tags") or []),
            "cardData": card,
            "siblings": siblings,
        }
        if repo.repo_type == "model":
            info["modelId"] = repo.repo_id
            if card.get("library_name"):
                info["library_name"] = card["library_name"]
            if card.get("pipeline_tag"):
                info["pipeline_tag"] = card["pipeline_tag"]
        return info

    def _preupload(self, repo: Repo, revision: str, body: dict):
        with self.state.lock:
            try:
                tree = repo.resolve(revision)["tree"]
            except HubError:
                tree = {}  # a new branch: nothing to compare with
        files = []
        for item in body.get("files", []):
            blob = tree.get(item["path"])
            files.append(
                {
                    "path": item["path"],
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    "oid": blob["oid"] if blob else None,
                }
            )
        return self._send_json({"files": files, "commitOid": None})

    def _commit(self, repo: Repo, revision: str, query: dict):
        if query.get("create_pr") in ("1", "true", "True"):
            raise HubError(400, "Pull requests are not supported by the local test Hub")
        header, ops = None, []
        for line in self._body().splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item.get("key"), item.get("value") or {}
            if key == "header":
                header = value
            elif key == "file":
                if value.get("encoding", "base64") != "base64":
                    raise HubError(400, f"Unsupported encoding {value.get('encoding')!r}")
                ops.append(("file", value["path"], base64.b64decode(value["content"])))
            elif key in ("deletedFile", "deletedFolder"):
                ops.append((key, value["path"], None))
            elif key == "lfsFile":
                raise HubError(400, "LFS uploads are not supported by the local test Hub (all files are regular)")
            else:
                raise HubError(400, f"Unknown commit operation {key!r}")
        if header is None or not header.get("summary"):
            raise HubError(400, "The commit needs a header with a summary")
        branch = unquote(revision)
        if branch.startswith("refs/heads/"):
            branch = branch[len("refs/heads/") :]
        commit, _created = self.state.commit(
            repo, branch, header["summary"], header.get("description") or "", ops, header.get("parentCommit")
        )
        prefix = "" if repo.repo_type == "model" else f"{repo.repo_type}s/"
        return self._send_json(
            {
                "success": True,
                "commitOid": commit["id"],
                "commitUrl": f"{self.endpoint}/{prefix}{repo.repo_id}/commit/{commit['id']}",
                "pullRequestUrl": None,
            }
        )

    def _tree(self, tree: dict, path: str, recursive: bool) -> list[dict]:
        path = path.strip("/")
        folders = tree_folders(tree)
        if path and path not in folders:
            if path in tree:
                return [file_entry(path, tree[path])]
            raise HubError(404, f"Path {path!r} not found in the tree", "EntryNotFound")
        prefix = path + "/" if path else ""
        out = []
        for folder in sorted(folders):
            if folder.startswith(prefix) and (recursive or "/" not in folder[len(prefix) :]):
                out.append(folder_entry(folder, tree))
        for name in sorted(tree):
            if name.startswith(prefix) and (recursive or "/" not in name[len(prefix) :]):
                out.append(file_entry(name, tree[name]))
        return out

    def _paths_info(self, tree: dict):
        raw = self._body().decode()
        ctype = self.headers.get("Content-Type", "")
        if "json" in ctype:
            paths = json.loads(raw).get("paths", [])
        else:
            paths = parse_qs(raw).get("paths", [])
        folders = tree_folders(tree)
        out = []
        for path in paths:
            if path in tree:
                out.append(file_entry(path, tree[path]))
            elif path in folders:
                out.append(folder_entry(path, tree))
        return self._send_json(out)

    def _resolve(self, method: str, repo: Repo, commit: dict, path: str):
        blob = commit["tree"].get(path)
        if blob is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        headers = {
            "Content-Type": "application/octet-stream",
            "ETag": f'"{blob["sha256"]}"',
            "X-Repo-Commit": commit["id"],
            "Accept-Ranges": "bytes",
            "Content-Disposition": f'inline; filename="{path.rsplit("/", 1)[-1]}"',
        }
        data = self.state.read_blob(blob) if method == "GET" else b""
        status = 200
        rng = self.headers.get("Range")
        if method == "GET" and rng and rng.startswith("bytes="):
            start_s, _, end_s = rng[len("bytes=") :].partition("-")
            start = int(start_s or 0)
            end = int(end_s) if end_s else len(data) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start : end + 1], 206
        if method == "HEAD":
            headers["Content-Length"] = str(blob["size"])
        self._send(status, data, headers, head=(method == "HEAD"))


class HubServer:
    """A local Hub on 127.0.0.1 served from a background thread."""

    def __init__(self, storage_dir: str | None = None, user: str = DEFAULT_USER, port: int = 0):
        self._tmp = None
        if storage_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="local-hub-")
            storage_dir = self._tmp.name
        self.state = HubState(storage_dir, user=user)
        handler = type("LocalHubHandler", (_Handler,), {"state": self.state})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self.thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def user(self) -> str:
        return self.state.user

    def start(self) -> HubServer:
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="local-hub", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self.thread is not None:
            self.thread.join(timeout=5)
        if self._tmp is not None:
            self._tmp.cleanup()

    # --- helpers for tests -----------------------------------------------------------------
    def commit_ids(self, repo_id: str, repo_type: str = "model", branch: str = "main") -> list[str]:
        """Commit ids of a branch, newest first."""
        with self.state.lock:
            repo = self.state.get_repo(repo_type, repo_id)
            return [c["id"] for c in repo.history(repo.resolve(branch))]

    def files(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> dict[str, bytes]:
        """The files of a repo at a revision: path -> content."""
        with self.state.lock:
            repo = self.state.get_repo(repo_type, repo_id)
            tree = repo.resolve(revision)["tree"]
            return {path: self.state.read_blob(blob) for path, blob in tree.items()}

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":  # run by hand: python tests/hub_server.py [PORT]
    import sys

    srv = HubServer(port=int(sys.argv[1]) if len(sys.argv) > 1 else 0).start()
    print(f"local Hub at {srv.endpoint} (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        srv.stop()
