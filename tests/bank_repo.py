"""A small Java repository built with git for the commit-metric tests (`test_commit_metrics.py`, `test_commit_risk.py`):
its commits get fixed authors and dates. The history (author date; committer date the same unless said):

    R1  Alice 2021-01-01  Add account           bank/Account.java (5 lines), bank/package-info.java (2), README.md
    R2  Bob   2021-01-05  Add deposit           Account.java +3
    R3  Alice 2021-01-10  Document the package  package-info.java +1 (no other file)
    R4  Bob   2021-01-02, committed 2021-01-20 (rebased)  Add audit log  bank/Audit.java (4), Account.java +1
    R5  Carol 2021-01-25  Add withdraw          Account.java +3, on branch `feature`
    M   Alice 2021-01-28  Merge branch 'feature'
    R6  Alice 2021-02-01  Fix deposit bug       Account.java +1 -1, package-info.java +1
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ACCOUNT = ["package bank;", "class Account {", "    int balance;", "    int get() { return balance; }", "}", ""]
DEPOSIT = ["    void deposit(int n) {", "        balance += n + 1;", "    }"]


def account(*parts: list[str]) -> str:
    lines = ACCOUNT[:4] + [line for part in parts for line in part] + ACCOUNT[4:]
    return "\n".join(lines)


class Repo:
    """A fresh repository whose commits get fixed authors and dates; `shas` by name (R1, R2, ...)."""

    def __init__(self, root: Path) -> None:
        self.root, self.shas = root, {}
        root.mkdir(parents=True)
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str, env: dict[str, str] | None = None) -> str:
        base = {"PATH": os.environ["PATH"], "HOME": str(self.root), "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_CONFIG_GLOBAL": os.devnull}
        return subprocess.run(["git", "-C", str(self.root), *args], env={**base, **(env or {})}, check=True,
                              capture_output=True, text=True).stdout

    def commit(self, name: str, author: str, date: str, message: str, files: dict[str, str],
               committed: str | None = None) -> None:
        for path, text in files.items():
            (self.root / path).parent.mkdir(parents=True, exist_ok=True)
            (self.root / path).write_text(text)
            self.git("add", path)
        self.git("commit", "-q", "-m", message, env=people(author, date, committed))
        self.shas[name] = self.git("rev-parse", "HEAD").strip()


def people(author: str, date: str, committed: str | None = None) -> dict[str, str]:
    return {"GIT_AUTHOR_NAME": author, "GIT_AUTHOR_EMAIL": f"{author}@example.org", "GIT_COMMITTER_NAME": author,
            "GIT_COMMITTER_EMAIL": f"{author}@example.org", "GIT_AUTHOR_DATE": date,
            "GIT_COMMITTER_DATE": committed or date}


def build(root: Path) -> Repo:
    r = Repo(root)
    info = "/** Accounts. */\npackage bank;\n"
    r.commit("R1", "Alice", "2021-01-01T10:00:00+00:00", "Add account",
             {"src/bank/Account.java": account(), "src/bank/package-info.java": info, "README.md": "# Bank\n"})
    r.commit("R2", "Bob", "2021-01-05T10:00:00+00:00", "Add deposit", {"src/bank/Account.java": account(DEPOSIT)})
    r.commit("R3", "Alice", "2021-01-10T10:00:00+00:00", "Document the package",
             {"src/bank/package-info.java": "/** Accounts and their audit. */\n" + info})
    r.commit("R4", "Bob", "2021-01-02T10:00:00+00:00", "Add audit log",
             {"src/bank/Audit.java": "package bank;\nclass Audit {\n    int n;\n}\n",
              "src/bank/Account.java": account(DEPOSIT, ["    Audit audit;"])},
             committed="2021-01-20T10:00:00+00:00")
    r.git("checkout", "-q", "-b", "feature")
    withdraw = ["    void withdraw(int n) {", "        balance -= n;", "    }"]
    r.commit("R5", "Carol", "2021-01-25T10:00:00+00:00", "Add withdraw",
             {"src/bank/Account.java": account(DEPOSIT, ["    Audit audit;"], withdraw)})
    r.git("checkout", "-q", "main")
    r.git("merge", "-q", "--no-ff", "feature", "-m", "Merge branch 'feature'",
          env=people("Alice", "2021-01-28T10:00:00+00:00"))
    r.shas["M"] = r.git("rev-parse", "HEAD").strip()
    fixed = [DEPOSIT[0], "        balance += n;", DEPOSIT[2]]
    r.commit("R6", "Alice", "2021-02-01T10:00:00+00:00", "Fix deposit bug",
             {"src/bank/Account.java": account(fixed, ["    Audit audit;"], withdraw),
              "src/bank/package-info.java": "/** Accounts, audited. */\n" + info})
    return r
