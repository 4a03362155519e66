"""Running git the way the shared data was built: no user or system configuration, so a user's
`diff.renames`, `diff.noprefix`, colour or external-diff settings cannot change the diffs we write, and from
inside the git directory, so the checkout's .gitattributes cannot either (commons-io's `*.java diff=java`
changes every hunk header, `*.dat binary` hides lines): the shared data was built from bare mirrors."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sweeper.errors import SweeperError

_home: str | None = None


def clean_env() -> dict[str, str]:
    """Variables that hide every configuration file but the repository's own (HOME is an empty folder)."""
    global _home
    if _home is None:
        _home = tempfile.mkdtemp(prefix="sweeper-git-home-")
        atexit.register(shutil.rmtree, _home, ignore_errors=True)
    return {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "HOME": _home,
            "XDG_CONFIG_HOME": _home, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}


@contextmanager
def clean_git_environment() -> Iterator[None]:
    """Apply `clean_env()` to this process for a while, so GitPython (under PyDriller) runs git the same way."""
    saved = {key: os.environ.get(key) for key in clean_env()}
    os.environ.update(clean_env())
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def git(repo: Path, *args: str) -> bytes:
    """stdout of git run in the git directory of `repo` (a checkout or a bare repository)."""
    return run_git(git_dir(repo), *args)


@lru_cache(maxsize=None)
def git_dir(repo: Path) -> Path:
    return Path(run_git(repo, "rev-parse", "--absolute-git-dir").decode().strip())


def run_git(folder: Path, *args: str) -> bytes:
    """stdout of `git -C folder args...`; a failure raises SweeperError with git's own message."""
    done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, env={**os.environ, **clean_env()})
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise SweeperError(f"{folder}: git {args[0]} failed: {message[-1] if message else done.returncode}")
    return done.stdout


def show_diffs(repo: Path, shas: Iterable[str], batch: int = 200) -> Iterator[tuple[str, str]]:
    """(sha, the `diff` field) for each non-merge commit in order: what `git show --format= --no-color
    --no-ext-diff -M <sha>` prints, invalid UTF-8 replaced, from one git process per `batch` commits:
    `git show --format=%x00%H` prints NUL, the sha, a newline, then the same text (a blank line first when
    there is a diff; git prints a NUL in no diff, a file with one being binary), six times faster on many."""
    pending = list(shas)
    for start in range(0, len(pending), batch):
        part = pending[start:start + batch]
        out = git(repo, "show", "--format=%x00%H", "--no-color", "--no-ext-diff", "-M", *part)
        chunks = out.split(b"\0")[1:]
        if [chunk[:40].decode() for chunk in chunks] != part:
            raise SweeperError(f"{repo}: git show returned other commits than asked for")
        for sha, chunk in zip(part, chunks):
            yield sha, chunk[42:].decode("utf-8", "replace")
