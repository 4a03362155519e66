"""Which files count: source code (for the change metrics and for SZZ), tests (left out of SZZ),
and the subsystem and directory of a path (Kamei's NS and ND)."""

from __future__ import annotations

import re

# Source-code extensions. JIT-Defects4J's metrics count only code files (a commons-codec commit that also
# edits pom.xml and a .txt resource has la/ld/nf of its .java files alone), so data files, docs and build
# files are left out here too.
CODE_EXTENSIONS = frozenset({
    "java", "kt", "kts", "scala", "groovy", "clj", "cljs",
    "c", "h", "cc", "cpp", "cxx", "hh", "hpp", "hxx", "m", "mm", "cs", "fs", "vb",
    "go", "rs", "swift", "dart", "py", "pyx", "pyi", "rb", "php", "pl", "pm", "lua", "r", "jl",
    "js", "jsx", "mjs", "cjs", "ts", "tsx", "vue", "erl", "ex", "exs", "hs", "ml", "f", "f90",
})

TEST_PATH = re.compile(
    r"(^|/)(tests?|testing|__tests__|spec)/"
    r"|(^|/)(Test\w*|\w+Tests?|\w+TestCase)\.\w+$"
    r"|(^|/)test_\w+\.py$|_test\.(py|go)$|\.(test|spec)\.[jt]sx?$")


def parse_extensions(text: str) -> frozenset[str]:
    """`java,py` or `.java, .py` -> {"java", "py"}."""
    return frozenset(part.strip().lstrip(".").lower() for part in text.split(",") if part.strip())


def is_code(path: str, extensions: frozenset[str] = CODE_EXTENSIONS) -> bool:
    name = path.rsplit("/", 1)[-1]
    return "." in name and name.rsplit(".", 1)[1].lower() in extensions


def is_package_info(path: str) -> bool:
    """A Java package's documentation file: JIT-Defects4J's change metrics leave it out (with it left out, every
    commons-codec and commons-io commit that touches one gets the shared file's la, nf, nd and entropy)."""
    return path.rsplit("/", 1)[-1] == "package-info.java"


def is_test(path: str) -> bool:
    return TEST_PATH.search(path) is not None


def subsystem(path: str) -> str:
    """The first folder of the path ("root" for a top-level file), as CommitGuru and JIT-Defects4J define it."""
    return path.split("/", 1)[0] if "/" in path else "root"


def directory(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else "root"
