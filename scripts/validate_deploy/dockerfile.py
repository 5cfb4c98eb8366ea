"""The Dockerfile and its build context (.dockerignore)."""

import base64
import copy
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

import importlib.metadata
import importlib.resources

import jsonschema
import kubernetes_validate
import kubernetes_validate.utils as kv_utils
import yaml
from dockerfile_parse import DockerfileParser


from common import *  # noqa: F401,F403  (the checker, paths and helpers)

# ------------------------------------------------------------ .dockerignore

def _glob_to_regex(pattern):
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
            continue
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = pattern.find("]", i)
            if end == -1:
                out += re.escape(c)
            else:
                out += pattern[i:end + 1].replace("\\", "\\\\")
                i = end
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out + r"\Z")


def dockerignore_rules():
    rules = []
    if not DOCKERIGNORE.exists():
        return rules
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:].strip() if negate else line
        pattern = os.path.normpath(pattern).lstrip("/")
        rules.append((negate, _glob_to_regex(pattern)))
    return rules


def ignored(relpath, rules):
    """Docker's rule: a path is out when the last matching pattern (on it or a parent) excludes it."""
    parts = relpath.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    excluded = False
    for negate, regex in rules:
        if any(regex.match(c) for c in candidates):
            excluded = not negate
    return excluded


def context_files(rules):
    files = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        rel_dir = os.path.relpath(dirpath, ROOT)
        rel_dir = "" if rel_dir == "." else rel_dir
        keep = []
        for d in dirnames:
            path = f"{rel_dir}/{d}" if rel_dir else d
            # Excluded directories are pruned unless an exception may re-include inside.
            if ignored(path, rules) and not any(neg for neg, _ in rules):
                continue
            keep.append(d)
        dirnames[:] = keep
        for name in filenames:
            path = f"{rel_dir}/{name}" if rel_dir else name
            if not ignored(path, rules):
                files.append(path)
    return files


# ------------------------------------------------------------ the Dockerfile

def dockerfile_stages():
    parser = DockerfileParser(path=str(DOCKERFILE))
    stages = []
    for instr in parser.structure:
        if instr["instruction"] == "FROM":
            words = instr["value"].split()
            words = [w for w in words if not w.startswith("--platform")]
            image = words[0]
            alias = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append({"image": image, "alias": alias, "instructions": []})
        elif stages:
            stages[-1]["instructions"].append(instr)
    return parser, stages


def exec_form(value):
    value = value.strip()
    if value.startswith("["):
        return json.loads(value)
    return None


def copy_parts(value):
    words = value.split()
    flags = [w for w in words if w.startswith("--")]
    rest = [w for w in words if not w.startswith("--")]
    if value.strip().startswith("["):
        rest = json.loads(value[value.index("["):])
    return flags, rest[:-1], rest[-1]


def check_dockerfile(c):
    parser, stages = dockerfile_stages()
    facts["dockerfile_stages"] = stages
    c.expect(len(stages) >= 2, f"multi-stage: found {len(stages)} FROM")
    aliases = [s["alias"] for s in stages]
    for stage in stages:
        image = stage["image"]
        if image in aliases:
            continue
        c.expect(":" in image.split("/")[-1] or "@" in image, f"FROM {image}: pin a tag")
        c.expect(not image.endswith(":latest"), f"FROM {image}: not :latest")
    c.expect(any(s["image"].startswith("rust:1-bookworm") for s in stages[:-1]),
             "a builder stage FROM rust:1-bookworm")
    final = stages[-1]
    c.expect(final["image"] == "debian:bookworm-slim", f"runtime FROM debian:bookworm-slim, not {final['image']}")
    for instr in parser.structure:
        if instr["instruction"] == "ADD":
            c.expect(not re.search(r"(https?|ftp)://|git@", instr["value"]),
                     f"line {instr['startline'] + 1}: ADD of a URL")
            c.problems.append(f"line {instr['startline'] + 1}: use COPY, not ADD")
        if instr["instruction"] == "RUN" and "apt-get install" in instr["value"]:
            c.expect("--no-install-recommends" in instr["value"],
                     f"line {instr['startline'] + 1}: apt-get install without --no-install-recommends")
            c.expect("rm -rf /var/lib/apt/lists" in instr["value"],
                     f"line {instr['startline'] + 1}: apt lists not removed in the same layer")
    by = {}
    for instr in final["instructions"]:
        by.setdefault(instr["instruction"], []).append(instr)
    users = by.get("USER", [])
    if c.expect(users, "runtime stage sets USER"):
        user = users[-1]["value"].split(":")[0]
        c.expect(user not in ("root", "0"), f"runtime USER is {user}")
        if c.expect(user.isdigit(), f"runtime USER {user!r} is not numeric (Kubernetes runAsNonRoot needs a uid)"):
            facts["image_uid"] = int(user)
    exposed = " ".join(i["value"] for i in by.get("EXPOSE", [])).split()
    c.expect("9464" in [p.split("/")[0] for p in exposed], f"EXPOSE 9464 (found {exposed})")
    entry = by.get("ENTRYPOINT", [])
    entry_argv = exec_form(entry[-1]["value"]) if entry else None
    c.expect(entry_argv in (["scoutstream"], ["/usr/local/bin/scoutstream"]),
             f"ENTRYPOINT [\"scoutstream\"] in exec form (found {entry_argv})")
    cmd = by.get("CMD", [])
    c.expect(cmd and exec_form(cmd[-1]["value"]) == ["run"], "CMD [\"run\"] in exec form")
    copies_binary = False
    for instr in by.get("COPY", []):
        flags, sources, dest = copy_parts(instr["value"])
        if any(f.startswith("--from=") for f in flags) and dest.endswith("scoutstream"):
            copies_binary = True
    c.expect(copies_binary, "runtime stage copies the scoutstream binary from a build stage")
    builds = [i["value"] for s in stages[:-1] for i in s["instructions"]
              if i["instruction"] == "RUN" and "cargo build" in i["value"]]
    c.expect(len(builds) >= 2, "a dependency-only cargo build before the full one (cached layer)")
    for value in builds:
        c.expect("--release" in value and "--locked" in value and "-p scoutstream" in value,
                 f"cargo build --release --locked -p scoutstream: {value[:80]}")
    health = by.get("HEALTHCHECK", [])
    if health:
        value = health[-1]["value"]
        c.expect("/healthz" in value and "9464" in value, "HEALTHCHECK asks /healthz on 9464")
        argv = exec_form(value[value.index("CMD") + 3:]) if "CMD" in value else None
        if c.expect(argv is not None, "HEALTHCHECK CMD in exec form"):
            extract["probes"].append({"origin": "Dockerfile HEALTHCHECK", "argv": argv, "port": 9464,
                                      "path": "/healthz"})
        c.note("HEALTHCHECK: bash /dev/tcp GET /healthz (run against the real binary by cli/tests/deploy_files.rs)")
    copies = {}
    for instr in final["instructions"]:
        if instr["instruction"] == "COPY":
            flags, sources, dest = copy_parts(instr["value"])
            if not any(f.startswith("--from=") for f in flags):
                for source in sources:
                    copies[dest] = source
    facts["runtime_copies"] = copies
    c.note(f"{len(stages)} stages: " + ", ".join(f"{s['alias'] or '-'}={s['image']}" for s in stages)
           + f"; runtime USER {facts.get('image_uid')}, EXPOSE {' '.join(exposed)}")


def check_build_context(c):
    rules = dockerignore_rules()
    c.expect(rules, ".dockerignore exists and has rules")
    files = set(context_files(rules))
    facts["context_files"] = files
    c.expect(not any(f.startswith("target/") for f in files), "target/ is out of the build context")
    c.expect(not any(f.startswith(".git/") for f in files), ".git/ is out of the build context")
    _, stages = dockerfile_stages()
    for stage in stages:
        for instr in stage["instructions"]:
            if instr["instruction"] != "COPY":
                continue
            flags, sources, _ = copy_parts(instr["value"])
            if any(f.startswith("--from=") for f in flags):
                continue
            for source in sources:
                if source in (".", "./"):
                    continue
                source = source.rstrip("/")
                c.expect(source in files or any(f.startswith(source + "/") for f in files),
                         f"COPY {source}: missing from the build context (or excluded by .dockerignore)")
    manifest = tomllib.loads((ROOT / "Cargo.toml").read_text())
    members = manifest["workspace"]["members"]
    c.expect("Cargo.lock" in files, "Cargo.lock is in the build context")
    compiled_in = 0
    for member in members:
        c.expect(f"{member}/Cargo.toml" in files, f"{member}/Cargo.toml is in the build context")
        src = ROOT / member / "src"
        for path in src.rglob("*.rs"):
            rel_path = path.relative_to(ROOT).as_posix()
            c.expect(rel_path in files, f"{rel_path} is in the build context")
            text = path.read_text(encoding="utf-8", errors="replace")
            for m in re.finditer(r'include_(?:str|bytes)!\(\s*"([^"]+)"\s*\)', text):
                target = os.path.normpath(os.path.join(os.path.dirname(rel_path), m.group(1)))
                compiled_in += 1
                c.expect(target in files, f"{rel_path} includes {target}: not in the build context")
            for m in re.finditer(r'migrate!\(\s*(?:"([^"]+)")?\s*\)', text):
                target = os.path.normpath(os.path.join(member, m.group(1) or "migrations"))
                compiled_in += 1
                c.expect(any(f.startswith(target + "/") for f in files),
                         f"{rel_path} embeds migrations {target}: not in the build context")
    c.note(f"{len(files)} files in the context; {compiled_in} include_str!/include_bytes!/migrate! "
           "targets of the workspace crates are in it")


def check_planner_skeleton(c):
    """Run the planner stage's RUN on a copy of the build context; cargo must accept the result."""
    _, stages = dockerfile_stages()
    planner = next((s for s in stages if s["alias"] == "planner"), None)
    if planner is None:
        raise Skip("no `planner` stage")
    runs = [i["value"] for i in planner["instructions"] if i["instruction"] == "RUN"]
    c.expect(len(runs) == 1, "the planner stage has one RUN")
    if not have("cargo"):
        raise Skip("cargo not installed")
    files = facts.get("context_files") or set(context_files(dockerignore_rules()))
    with tempfile.TemporaryDirectory() as tmp:
        src, skeleton = pathlib.Path(tmp, "src"), pathlib.Path(tmp, "skeleton")
        for f in files:
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, src / f)
        script = runs[0].replace("/skeleton", str(skeleton))
        done = sh(["/bin/sh", "-c", script], cwd=src)
        if not c.expect(done.returncode == 0, f"planner RUN failed: {done.stderr.strip()[-400:]}"):
            return
        real = sh(["cargo", "metadata", "--no-deps", "--offline", "--format-version", "1"], cwd=ROOT)
        if not c.expect(real.returncode == 0, f"cargo metadata (repo): {real.stderr.strip()[-300:]}"):
            return
        built_kinds = {"lib", "rlib", "bin", "proc-macro", "custom-build"}
        needed = []
        for package in json.loads(real.stdout)["packages"]:
            for target in package["targets"]:
                if built_kinds & set(target["kind"]):
                    needed.append(pathlib.Path(target["src_path"]).resolve().relative_to(ROOT))
        for path in needed:
            c.expect((skeleton / path).exists(), f"skeleton lacks {path}: the dependency build would fail")
        locked = sh(["cargo", "metadata", "--locked", "--offline", "--format-version", "1"], cwd=skeleton)
        if locked.returncode == 0:
            c.note(f"planner RUN (/bin/sh) made a skeleton with {len(needed)} crate roots; "
                   "`cargo metadata --locked` accepts it with the repo's Cargo.lock")
        elif "offline" in locked.stderr or "download" in locked.stderr:
            c.note("`cargo metadata --locked` skipped: crates not in the local cache (offline)")
        else:
            c.problems.append(f"skeleton: cargo metadata --locked: {locked.stderr.strip()[-400:]}")


