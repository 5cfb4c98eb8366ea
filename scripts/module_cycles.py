#!/usr/bin/env python3
"""Fails when the top-level modules of a crate import each other in a circle.

Cargo already refuses circles between crates; inside a crate nothing does. An
edge is any `crate::<module>` path in a module's non-test code (comments and a
file's trailing `#[cfg(test)] mod tests` left out). Usage:
    scripts/module_cycles.py [CRATE_DIR...]    (default: the workspace's members)
"""
import os
import re
import sys

TEST_MODULE = re.compile(r"#\[cfg\(test\)\]\s*mod tests")
CRATE_PATH = re.compile(r"crate::([a-z_][a-z0-9_]*)")


def top_level_modules(src):
    """Each top-level module of `src` with the files it is made of."""
    modules = {}
    for root, _, files in os.walk(src):
        for name in files:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(root, name)
            first = os.path.relpath(path, src).split(os.sep)[0]
            module = first[:-3] if first.endswith(".rs") else first
            if module not in ("lib", "main"):
                modules.setdefault(module, []).append(path)
    return modules


def code_of(path):
    with open(path, encoding="utf-8") as file:
        text = TEST_MODULE.split(file.read())[0]
    return "\n".join(line for line in text.splitlines() if not line.strip().startswith("//"))


def imports(modules):
    return {
        module: {
            used
            for path in paths
            for used in CRATE_PATH.findall(code_of(path))
            if used != module and used in modules
        }
        for module, paths in modules.items()
    }


def a_cycle(graph):
    """One circle of modules, or None (depth-first search, three colours)."""
    state, stack = {}, []

    def visit(module):
        state[module] = "open"
        stack.append(module)
        for used in sorted(graph[module]):
            if state.get(used) == "open":
                return stack[stack.index(used):] + [used]
            if used not in state:
                found = visit(used)
                if found:
                    return found
        stack.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state:
            found = visit(module)
            if found:
                return found
    return None


def workspace_members():
    with open(os.path.join(os.path.dirname(__file__), "..", "Cargo.toml"), encoding="utf-8") as file:
        members = re.search(r"members\s*=\s*\[([^\]]*)\]", file.read()).group(1)
    root = os.path.join(os.path.dirname(__file__), "..")
    return [os.path.join(root, name) for name in re.findall(r'"([^"]+)"', members)]


def main(crates):
    crates = crates or workspace_members()
    failed = False
    for crate in crates:
        cycle = a_cycle(imports(top_level_modules(os.path.join(crate, "src"))))
        if cycle:
            print(f"module_cycles: {crate}: {' -> '.join(cycle)}", file=sys.stderr)
            failed = True
    if not failed:
        print(f"module_cycles: no import circle in {len(crates)} crates")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
