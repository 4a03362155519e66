"""The 14 change metrics of Kamei et al. (TSE 2013), computed the way JIT-Defects4J computed them.

JIT-Defects4J (the labels and `features` of shared/data/jitdp) inherits CommitGuru's implementation
(Rosen et al., FSE 2015). Replayed here and checked against the shared file (bench/mining_agreement.py: all
13 metrics but `fix` equal on every commit of commons-codec, -io, -net, -lang, -configuration, -vfs and -scxml;
commons-beanutils `ndev` and commons-collections still differ, see BENCHMARKS.md), its conventions are:

- Only source files count (`paths.CODE_EXTENSIONS`), less `package-info.java` files (`--package-info` counts
  them); a commit that touches none is not part of the history.
- The history is every commit of every ref (`--history all`; `branch` keeps the mined branch's only),
  replayed in commit-date order (`--history-order author` for author dates): a commit rebased long after it was
  written sees the commits made meanwhile, and its `age` can be negative (the shared data has such ages). Times
  within the metrics (`age`, `rexp`) are author times. Files are known by path: a renamed file starts a new
  history at its new path (its lines so far are not carried over); a deleted path keeps its history if it comes
  back.
- Size: `la`, `ld` lines added and deleted (`git log --numstat -M`, binary files 0), not normalised by `lt`.
- Diffusion: `nf` files, `ns` subsystems (first folder, "root" for top-level files), `nd` folders,
  `entropy` = -sum p log2 p over files with p the file's share of la+ld (not divided by log2 nf).
- `lt`: mean over the files of their size before the change, where a file's size is the sum of la-ld of its
  earlier changes at this path (so 0 for a new or just-renamed path, and negative after a rename that
  deleted lines): the CommitGuru estimate, not a count of the parent's lines.
- `ndev`: CommitGuru's rule: a commit sets the author list of every file it touches to the union of the
  author lists those files had, plus its own author when it creates a file. A developer who only modifies
  existing files is not added, so this undercounts Kamei's "developers who changed the files".
- `age`: mean over the files of the days since the path last changed (0 for a new path).
- `nuc`: sum over the files of their earlier changes at this path (a commit touching two of them counts
  twice, unlike Kamei's "unique changes").
- `exp`: the author's earlier commits; `rexp`: sum of 1 / (1 + years before this commit) over them;
  `sexp`: mean over the commit's subsystems of the author's earlier commits touching that subsystem, where
  an author's first commit counts in one subsystem only, that of its last file (JIT-Defects4J's quirk: with it
  every commons-vfs `sexp` is the shared one, without it 7 of 222 are 1 or 0.5 higher, all by authors whose
  first commit spanned two subsystems; `--sexp-first-commit all` counts each subsystem).
  Authors are matched by name.
- `fix`: 1 when the commit is a bug fix by the same rule SZZ uses (szz.FixDetector); JIT-Defects4J's
  flag is a keyword match further filtered by the JIRA issue type, which a clone alone cannot tell.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from sweeper.mining.commits import Change, FileChange
from sweeper.mining.paths import CODE_EXTENSIONS, directory, is_code, is_package_info, subsystem

DAY = 86400.0


@dataclass
class FileHistory:
    """What the metrics remember of one path."""

    lines: int = 0
    changes: int = 0
    last_time: int = 0
    authors: frozenset[str] = frozenset()


@dataclass
class AuthorHistory:
    """An author's earlier commits: their times and the subsystems each touched."""

    times: list[int] = field(default_factory=list)
    subsystems: list[frozenset[str]] = field(default_factory=list)


class History:
    """Replays commits oldest first; `features` of a commit reads the history before it, `add` extends it."""

    def __init__(self, extensions: frozenset[str] = CODE_EXTENSIONS, package_info: bool = False,
                 first_subsystems: bool = False) -> None:
        self.extensions = extensions
        self.package_info = package_info  # count package-info.java files (JIT-Defects4J does not)
        self.first_subsystems = first_subsystems  # an author's first commit counts in each subsystem it touched
        self.files: dict[str, FileHistory] = {}
        self.authors: dict[str, AuthorHistory] = defaultdict(AuthorHistory)

    def code_files(self, change: Change) -> list[FileChange]:
        return [f for f in change.files
                if is_code(f.path, self.extensions) and (self.package_info or not is_package_info(f.path))]

    def features(self, change: Change, fix: bool) -> dict[str, float]:
        """The 14 metrics of `change` against the history so far (call before `add`)."""
        files = self.code_files(change)
        if not files:
            raise ValueError(f"{change.sha}: no source file changed")
        la, ld = sum(f.added for f in files), sum(f.deleted for f in files)
        subsystems = {subsystem(f.path) for f in files}
        known = [self.files[f.path] for f in files if f.path in self.files]
        developers = set().union(*(h.authors for h in known))
        if len(known) < len(files):
            developers.add(change.author)
        mine = self.authors[change.author]
        return {
            "la": la,
            "ld": ld,
            "nf": len(files),
            "ns": len(subsystems),
            "nd": len({directory(f.path) for f in files}),
            "entropy": entropy([f.added + f.deleted for f in files]),
            "ndev": len(developers),
            "lt": sum(h.lines for h in known) / len(files),
            "nuc": sum(h.changes for h in known),
            "age": sum((change.time - h.last_time) / DAY for h in known) / len(files),
            "exp": float(len(mine.times)),
            "rexp": sum(1.0 / (1.0 + (change.time - t) / DAY / 365.0) for t in mine.times),
            "sexp": sum(sum(1 for seen in mine.subsystems if name in seen) for name in subsystems) / len(subsystems),
            "fix": int(fix),
        }

    def add(self, change: Change) -> None:
        """Record `change` (merges and commits without source files leave no trace, as in JIT-Defects4J)."""
        files = self.code_files(change)
        if change.merge or not files:
            return
        known = [self.files[f.path] for f in files if f.path in self.files]
        authors = frozenset().union(*(h.authors for h in known))
        if len(known) < len(files):
            authors |= {change.author}
        for f in files:
            history = self.files.setdefault(f.path, FileHistory())
            history.lines += f.added - f.deleted
            history.changes += 1
            history.last_time = change.time
            history.authors = authors
        mine = self.authors[change.author]
        subsystems = [subsystem(f.path) for f in files]
        if not mine.times and not self.first_subsystems:  # JIT-Defects4J: the first commit's last file's only
            subsystems = subsystems[-1:]
        mine.times.append(change.time)
        mine.subsystems.append(frozenset(subsystems))


def entropy(changed_lines: list[int]) -> float:
    """Shannon entropy (bits) of how the changed lines spread over the files."""
    total = sum(changed_lines)
    return -sum(n / total * math.log2(n / total) for n in changed_lines if n) if total else 0.0
