#!/usr/bin/env python3
"""No module circles inside a crate.

Usage: module_circles.py [crate folder name …] (all crates when none is named).

For each crate under crates/, each top-level module of its src/ (a file `x.rs` or a folder
`x/`, whose files count as one module) is a node; a path `crate::x::…`, or `crate::Name` where
the crate root re-exports `Name` from `x`, is an edge to `x`. Within a folder module, its files
are checked the same way among themselves (`super::name` from a child to a sibling). Comments
(and so doc links) and unit tests (a `mod tests` block, or a folder's `tests.rs`) are ignored. Exits 1 and names the modules of every circle found.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def code(path):
    """The file's text without comments (line comments and doc comments) and without its unit
    tests (a `#[cfg(test)] mod tests` and what follows it): what a module's tests use is not a
    dependency of the module."""
    out = []
    text = re.split(r"#\[cfg\(test\)\]\s*mod tests\b", path.read_text())[0]
    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped.startswith("//"):
            continue
        out.append(re.sub(r"\s//.*$", "", line))
    return "\n".join(out)


def paths(text, prefix):
    """Every path after `prefix::` (e.g. `crate`), grouped imports expanded one level."""
    found = []
    for m in re.finditer(prefix + r"::(\{[^}]*\}|\w+)", text):
        part = m.group(1)
        if part.startswith("{"):
            found += [p.strip().split("::")[0] for p in part[1:-1].split(",") if p.strip()]
        else:
            found.append(part)
    return [re.sub(r"\W.*$", "", p) for p in found if p]


def reexports(root_text):
    """Name → module for the root's `pub use module::{…}` / `pub use module::Name`."""
    names = {}
    for m in re.finditer(r"pub(?:\(crate\))?\s+use\s+(\w+)::(\{[^}]*\}|\w+)", root_text):
        module, part = m.group(1), m.group(2)
        items = part[1:-1].split(",") if part.startswith("{") else [part]
        for item in items:
            item = item.strip()
            if not item:
                continue
            alias = re.split(r"\s+as\s+", item)
            names[alias[-1].split("::")[-1].strip()] = module
    return names


def sccs(graph):
    """The strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def check(src, root_file, prefix, label):
    """Circles among the modules of `src` (whose root is `root_file`), `prefix` naming the root."""
    modules = {}
    for f in src.iterdir():
        if f.is_file() and f.suffix == ".rs" and f != root_file and f.name != "mod.rs":
            modules.setdefault(f.stem, []).append(f)
        elif f.is_dir():
            # A folder's `tests.rs` is its unit tests (`#[cfg(test)] mod tests;`): not a dependency.
            modules.setdefault(f.name, []).extend(
                p for p in sorted(f.rglob("*.rs")) if p.name != "tests.rs"
            )
    names = reexports(code(root_file))
    graph = {}
    for module, files in modules.items():
        edges = set()
        for f in files:
            for name in paths(code(f), prefix):
                target = name if name in modules else names.get(name)
                if target and target != module and target in modules:
                    edges.add(target)
        graph[module] = edges
    found = [f"{label}: {' <-> '.join(c)}" for c in sccs(graph)]
    # Folder modules: their children among themselves.
    # (A folder `x/` is the module `x`, whose root is `x/mod.rs` or `x.rs` beside it.)
    for f in src.iterdir():
        if f.is_dir():
            root = f / "mod.rs" if (f / "mod.rs").exists() else src / f"{f.name}.rs"
            if root.exists():
                found += check(f, root, "super", f"{label}/{f.name}")
    return found


def main():
    """Checks the crates named on the command line (folder names under crates/), or all."""
    wanted = set(sys.argv[1:])
    circles = []
    for crate in sorted((ROOT / "crates").iterdir()):
        if wanted and crate.name not in wanted:
            continue
        src = crate / "src"
        for root in ("lib.rs", "main.rs"):
            if (src / root).exists():
                circles += check(src, src / root, "crate", crate.name)
                break
    for circle in circles:
        print(f"module circle: {circle}")
    if circles:
        sys.exit(1)
    print("no module circles")


if __name__ == "__main__":
    main()
