"""The local Hub's state for tests/hub_server.py: repos with their commits, refs and trees in memory, file
contents stored once by sha256 in a folder, and the error the server maps to the Hub's error headers (stdlib only).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from datetime import datetime, timezone
from urllib.parse import unquote

DEFAULT_USER = "hub-tester"
REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"


class HubError(Exception):
    """An HTTP error answer: status, message and the optional X-Error-Code."""

    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob, as the Hub reports for regular files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def front_matter(text: str) -> str | None:
    """The YAML block between leading `---` lines of a README, or None."""
    if not text.startswith("---"):
        return None
    lines = text.splitlines()
    for i in range(1, len(lines)):
        if lines[i].strip() == "---":
            return "\n".join(lines[1:i])
    return None


class Repo:
    """One repository: commits (each a full tree path -> blob record) and branches."""

    def __init__(self, repo_type: str, repo_id: str, private: bool):
        self.repo_type, self.repo_id, self.private = repo_type, repo_id, private
        self.created_at = _now()
        self.commits: dict[str, dict] = {}
        self.refs: dict[str, str] = {}

    def resolve(self, revision: str) -> dict:
        revision = unquote(revision)
        if revision.startswith("refs/heads/"):
            revision = revision[len("refs/heads/") :]
        if revision in self.refs:
            return self.commits[self.refs[revision]]
        if len(revision) >= 7:
            matches = [oid for oid in self.commits if oid.startswith(revision.lower())]
            if len(matches) == 1:
                return self.commits[matches[0]]
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def history(self, commit: dict) -> list[dict]:
        out = []
        while commit is not None:
            out.append(commit)
            commit = self.commits.get(commit["parent"]) if commit["parent"] else None
        return out


class HubState:
    """All repos plus the blob store; guarded by one lock."""

    def __init__(self, storage_dir: str, user: str = DEFAULT_USER):
        self.storage_dir = storage_dir
        self.blob_dir = os.path.join(storage_dir, "blobs")
        os.makedirs(self.blob_dir, exist_ok=True)
        self.user = user
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lock = threading.RLock()
        self._counter = 0

    # --- blobs ---------------------------------------------------------------------------
    def put_blob(self, data: bytes) -> dict:
        sha256 = hashlib.sha256(data).hexdigest()
        path = os.path.join(self.blob_dir, sha256)
        if not os.path.exists(path):
            tmp = f"{path}.{threading.get_ident()}.tmp"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        return {"sha256": sha256, "oid": git_blob_sha1(data), "size": len(data)}

    def read_blob(self, blob: dict) -> bytes:
        with open(os.path.join(self.blob_dir, blob["sha256"]), "rb") as f:
            return f.read()

    # --- repos ---------------------------------------------------------------------------
    def get_repo(self, repo_type: str, repo_id: str) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, f"Repository not found: {repo_type} {repo_id}", "RepoNotFound")
        return repo

    def create_repo(self, repo_type: str, repo_id: str, private: bool) -> Repo:
        with self.lock:
            if (repo_type, repo_id) in self.repos:
                raise HubError(409, f"You already created this {repo_type} repo")
            repo = Repo(repo_type, repo_id, private)
            self.repos[(repo_type, repo_id)] = repo
            self.commit(repo, "main", "initial commit", "", [("file", ".gitattributes", GITATTRIBUTES)])
            return repo

    def commit(self, repo: Repo, branch: str, title: str, description: str, ops: list, parent: str | None = None):
        """Apply operations on the head of `branch`; return (commit, created)."""
        with self.lock:
            head = self.commits_head(repo, branch)
            if parent is not None and head is not None and not head["id"].startswith(parent):
                raise HubError(412, "A commit has happened since the parent commit. Please pull the latest changes.")
            tree = dict(head["tree"]) if head else {}
            for kind, path, data in ops:
                if kind == "file":
                    tree[path] = self.put_blob(data)
                elif kind == "deletedFile":
                    if path not in tree:
                        raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                    del tree[path]
                elif kind == "deletedFolder":
                    prefix = path.rstrip("/") + "/"
                    for name in [p for p in tree if p.startswith(prefix)]:
                        del tree[name]
            if head is not None and tree == head["tree"]:
                return head, False  # nothing changed: no new commit
            self._counter += 1
            seed = json.dumps([repo.repo_id, head and head["id"], title, sorted(tree.items()), self._counter, time.time()])
            commit = {
                "id": hashlib.sha1(seed.encode()).hexdigest(),
                "parent": head["id"] if head else None,
                "title": title,
                "message": description,
                "date": _now(),
                "tree": tree,
            }
            repo.commits[commit["id"]] = commit
            repo.refs[branch] = commit["id"]
            return commit, True

    def commits_head(self, repo: Repo, branch: str) -> dict | None:
        if branch not in repo.refs:
            if repo.refs:  # committing to an unknown branch is an error, as on the Hub
                raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            return None
        return repo.commits[repo.refs[branch]]


def tree_folders(tree: dict) -> set[str]:
    """Every folder that a tree (path -> blob) holds a file under, at every depth."""
    out = set()
    for path in tree:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            out.add("/".join(parts[:i]))
    return out


def file_entry(path: str, blob: dict) -> dict:
    """A file as a tree listing gives it (the git blob sha1 as `oid`, as the Hub does for regular files)."""
    return {"type": "file", "path": path, "size": blob["size"], "oid": blob["oid"]}


def folder_entry(path: str, tree: dict) -> dict:
    """A folder as a tree listing gives it, its `oid` a digest of what it holds."""
    prefix = path + "/"
    digest = hashlib.sha1(json.dumps(sorted((p, b["oid"]) for p, b in tree.items() if p.startswith(prefix))).encode())
    return {"type": "directory", "path": path, "oid": digest.hexdigest()}
