"""The filesystem a sandboxed program sees: only what Python needs, read-only.

A program sees the interpreter, its standard library, the allowed packages (sympy, mpmath and
what they import, with their dist-info), the system library directories the dynamic loader
searches, /etc/ld.so.cache, a handful of /dev nodes, and a private empty /tmp of its own.
Nothing else of the host exists for it: no /work, /home, /root, /srv, /proc, /sys, project,
virtualenv or output directory, and of /etc only the loader cache.

Mechanisms, best first (the zygote uses the first that works and reports which):
  - "pivot_root": in a private mount namespace (as root, or as an unprivileged user inside a
    user namespace) the zygote builds a new root on a tmpfs out of read-only bind mounts, at
    neutral paths (/python/lib/..., /python/site/...), pivots into it and detaches the host
    tree. Every module already imported is re-pointed at the new paths (`relocate_python`),
    so lazy imports keep working and no host path is needed. Each job then gets its own mount
    namespace with a fresh tmpfs on /tmp (`private_tmp`).
  - "landlock": no mount namespace possible (e.g. a container without CAP_SYS_ADMIN), but the
    kernel has Landlock: each job is confined to reading the same host paths and writing its
    own directory. Host paths keep their names and stat() still works on them, but no other
    file or directory can be opened or listed.
  - neither: the layer is reported inactive and programs see the host filesystem as their
    (unprivileged, where possible) uid does.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import importlib.metadata
import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from mathsynth.verifiers.sandbox.isolation import libc, mount, mount_flags_of, os_error

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MNT_DETACH = 2

# Where the Python installation appears inside the sandbox.
PREFIX = "/python"
SITE = f"{PREFIX}/site"
# The dynamic loader's directories: an extension module imported lazily needs its shared
# libraries. Those that /etc/ld.so.cache lists are bound (not all of /usr/lib, which holds
# whole applications); these top-level ones are recreated as the symlinks they are on
# merged-/usr systems, or bound when `ldconfig -p` cannot say.
LOADER_DIRS = (
    "/lib",
    "/lib64",
    "/lib32",
    "/libx32",
    "/usr/lib",
    "/usr/lib64",
    "/usr/lib32",
    "/usr/libx32",
)
LOADER_FILES = ("/etc/ld.so.cache",)
DEV_NODES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
ALLOWED_PACKAGES = ("sympy", "mpmath")


@dataclass(frozen=True, slots=True)
class Mount:
    """One thing a program sees: `inside` (its path in the sandbox) shows host `source`.
    kind: "dir" / "file" (read-only binds), "dev" (a device node), "link" (a symlink whose
    target is `source`), "tmpfs" (empty, private)."""

    inside: str
    source: str
    kind: str
    writable: bool = False

    def describe(self) -> str:
        mode = "read-write" if self.writable else "read-only"
        if self.kind == "link":
            return f"symlink to {self.source}"
        if self.kind == "tmpfs":
            return f"private empty tmpfs, {mode}"
        return f"{mode} bind of host {self.source}"


# -- what Python needs ------------------------------------------------------------------------


def _stdlib_dirs() -> list[str]:
    """The standard library directories on sys.path (the source dir and lib-dynload)."""
    bases = {os.path.realpath(p) for p in (sys.base_prefix, sys.base_exec_prefix)}
    found = []
    for entry in sys.path:
        if not entry or not os.path.isdir(entry):
            continue
        real = os.path.realpath(entry)
        if any(real == b or real.startswith(b + os.sep) for b in bases) and not _is_site(real):
            found.append(real)
    stdlib = os.path.dirname(os.path.realpath(os.__file__))
    if stdlib not in found:
        found.insert(0, stdlib)
    # keep outermost only: lib-dynload normally lies inside the stdlib dir
    return [p for p in found if not any(p.startswith(q + os.sep) for q in found if q != p)]


def _is_site(path: str) -> bool:
    return os.path.basename(path) in ("site-packages", "dist-packages")


def _top_level_entry(name: str) -> str | None:
    """The file or directory a top-level module is (or would be) imported from, found
    without importing it."""
    module = sys.modules.get(name)
    spec = getattr(module, "__spec__", None) if module is not None else None
    if spec is None:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        for path in spec.submodule_search_locations:
            return os.path.realpath(path)
    return os.path.realpath(spec.origin) if spec.origin and os.path.isabs(spec.origin) else None


def allowed_entries(
    packages: Iterable[str], imported_since: Iterable[str] = ()
) -> dict[str, list[str]]:
    """Host paths of the allowed packages, by site directory: each package's top-level dir
    (or file), its dist-info and a vendored `<name>.libs` dir, for the packages, their
    declared requirements (recursively) and every non-stdlib top-level module in
    `imported_since` (what importing them pulled in)."""
    top_levels = _top_levels_by_distribution()
    names = set(packages) | {m.split(".")[0] for m in imported_since}
    names |= _required_names(packages, top_levels)
    stdlib = _stdlib_dirs()
    by_site: dict[str, list[str]] = {}
    for name in sorted(names):
        entry = _top_level_entry(name)
        if entry is None or not os.path.exists(entry):
            continue
        if any(entry.startswith(s + os.sep) for s in stdlib) and not _in_site(entry):
            continue  # part of the standard library: visible anyway
        site = os.path.dirname(entry)
        paths = by_site.setdefault(site, [])
        candidates = [entry, os.path.join(site, f"{name}.libs")]
        for dist_name, tops in top_levels.items():
            if name in tops:
                with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                    info = getattr(importlib.metadata.distribution(dist_name), "_path", None)
                    if info is not None:
                        candidates.append(os.path.realpath(str(info)))
        for path in candidates:
            if os.path.exists(path) and os.path.dirname(path) == site and path not in paths:
                paths.append(path)
    return by_site


def _in_site(path: str) -> bool:
    return any(_is_site(part) for part in path.split(os.sep))


def _top_levels_by_distribution() -> dict[str, set[str]]:
    """Installed distribution name -> its top-level import names."""
    out: dict[str, set[str]] = {}
    with contextlib.suppress(Exception):  # metadata is best effort
        for top, dists in importlib.metadata.packages_distributions().items():
            for dist in dists:
                out.setdefault(dist, set()).add(top)
    return out


def _required_names(packages: Iterable[str], top_levels: dict[str, set[str]]) -> set[str]:
    """Top-level import names of the (non-extra) requirements of the packages' dists."""

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    by_norm = {norm(d): d for d in top_levels}
    todo = [d for d, tops in top_levels.items() if tops & set(packages)]
    seen: set[str] = set()
    out: set[str] = set()
    while todo:
        dist_name = by_norm.get(norm(todo.pop()))
        if dist_name is None or dist_name in seen:
            continue
        seen.add(dist_name)
        out |= top_levels[dist_name]
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            for req in importlib.metadata.distribution(dist_name).requires or []:
                match = re.match(r"[A-Za-z0-9._-]+", req)
                if match and "extra ==" not in req:
                    todo.append(match.group(0))
    return {n for n in out if not n.startswith("_")}


def plan_mounts(site_entries: dict[str, list[str]]) -> tuple[list[Mount], list[tuple[str, str]]]:
    """The sandbox's tree and the host-prefix -> sandbox-path map used to relocate modules.

    Raises OSError when the standard library cannot be found (nothing would import)."""
    mounts: list[Mount] = []
    moves: list[tuple[str, str]] = []
    for path in LOADER_DIRS:
        if os.path.islink(path):
            mounts.append(Mount(path, os.readlink(path), "link"))
    for path in _loader_dirs():
        mounts.append(Mount(path, path, "dir"))
    for path in LOADER_FILES:
        if os.path.isfile(path):
            mounts.append(Mount(path, os.path.realpath(path), "file"))
    for path in DEV_NODES:
        if os.path.exists(path):
            mounts.append(Mount(path, path, "dev", writable=True))
    stdlib = _stdlib_dirs()
    if not stdlib:
        raise OSError("cannot locate the standard library")
    for n, path in enumerate(stdlib):
        # lib-dynload normally lies inside the stdlib dir; where it does not (Fedora's
        # /usr/lib64), it gets a directory of its own
        inside = f"{PREFIX}/lib{n or ''}/{os.path.basename(path)}"
        mounts.append(Mount(inside, path, "dir"))
        moves.append((path, inside))
        # a base installation's own site-packages inside the stdlib dir holds pip & co
        for site_name in ("site-packages", "dist-packages"):
            if os.path.isdir(os.path.join(path, site_name)):
                mounts.append(Mount(f"{inside}/{site_name}", "", "tmpfs"))
    interpreter = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    if os.path.isfile(interpreter):
        inside = f"{PREFIX}/bin/{os.path.basename(interpreter)}"
        mounts.append(Mount(inside, interpreter, "file"))
    for entries in site_entries.values():
        for path in entries:
            inside = f"{SITE}/{os.path.basename(path)}"
            kind = "dir" if os.path.isdir(path) else "file"
            mounts.append(Mount(inside, path, kind))
            moves.append((path, inside))
    mounts.append(Mount("/tmp", "", "tmpfs", writable=True))
    moves.sort(key=lambda m: len(m[0]), reverse=True)
    return mounts, moves


def _loader_dirs() -> list[str]:
    """Directories of the libraries in the loader's cache (real paths, outermost only)."""
    found: set[str] = set()
    for ldconfig in ("/sbin/ldconfig", "/usr/sbin/ldconfig", "ldconfig"):
        try:
            out = subprocess.run(
                [ldconfig, "-p"], capture_output=True, text=True, timeout=30, check=True
            ).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        for line in out.splitlines():
            if "=>" in line:
                found.add(os.path.dirname(os.path.realpath(line.split("=>", 1)[1].strip())))
        break
    if not found:
        found = {p for p in LOADER_DIRS if os.path.isdir(p) and not os.path.islink(p)}
    found = {p for p in found if os.path.isdir(p)}
    return sorted(p for p in found if not any(p.startswith(q + os.sep) for q in found))


# -- pivot_root ---------------------------------------------------------------------------------


def build_root(mounts: list[Mount]) -> list[str]:
    """Assemble `mounts` as a new root and pivot into it. Call inside a fresh, private mount
    namespace with the capability to mount. Returns problems (empty when all went well);
    raises OSError when the new root itself cannot be set up (the caller then falls back).

    Sources anywhere (under /tmp too: CI clones and virtualenvs often are) are opened first
    as O_PATH descriptors; the new root is a tmpfs mounted over /tmp (visible only in this
    namespace) and each source is bound from its descriptor through /proc/self/fd.
    """
    if not mount(None, "/", None, MS_REC | MS_PRIVATE, None):
        raise os_error("make mounts private")
    handles: dict[str, int] = {}
    problems: list[str] = []
    try:
        for m in mounts:
            if m.kind in ("dir", "file", "dev") and m.source not in handles:
                try:
                    handles[m.source] = os.open(m.source, os.O_PATH | os.O_CLOEXEC)
                except OSError as exc:
                    problems.append(f"{m.source}: {exc.strerror}")
        root = "/tmp"
        if not mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,mode=0755"):
            raise os_error("mount the new root's tmpfs")
        for m in mounts:
            target = root + m.inside
            if m.kind == "link":
                os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
                os.symlink(m.source, target)
                continue
            if m.kind == "tmpfs":
                os.makedirs(target, mode=0o755, exist_ok=True)
                if m.inside != "/tmp":  # /tmp itself is mounted per job (`private_tmp`)
                    options = "size=4k,mode=0555"
                    if not mount(
                        "tmpfs", target, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, options
                    ):
                        problems.append(f"{m.inside}: {os.strerror(ctypes.get_errno())}")
                continue
            fd = handles.get(m.source)
            if fd is None:
                continue
            _make_mountpoint(target, directory=m.kind == "dir")
            if not mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC, None):
                problems.append(f"{m.inside}: bind failed: {os.strerror(ctypes.get_errno())}")
                continue
            flags = MS_BIND | MS_REMOUNT | MS_NOSUID | mount_flags_of(target)
            if m.kind != "dev":
                flags |= MS_NODEV
            if not m.writable:
                flags |= MS_RDONLY
            if not mount(None, target, None, flags, None):
                problems.append(f"{m.inside}: remount failed: {os.strerror(ctypes.get_errno())}")
                libc.umount2(target.encode(), MNT_DETACH)
    finally:
        for fd in handles.values():
            os.close(fd)
    old = root + "/.old-root"
    os.mkdir(old, 0o700)
    os.chdir(root)
    if libc.syscall(_SYS_PIVOT_ROOT, b".", b".old-root") != 0:
        raise os_error("pivot_root")
    os.chdir("/")
    if libc.umount2(b"/.old-root", MNT_DETACH) != 0:
        raise os_error("detach the host tree")
    os.rmdir("/.old-root")
    if not mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, None):
        problems.append(f"/: remount read-only failed: {os.strerror(ctypes.get_errno())}")
    return problems


_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(os.uname().machine, 155)


def _make_mountpoint(target: str, *, directory: bool) -> None:
    os.makedirs(target if directory else os.path.dirname(target), mode=0o755, exist_ok=True)
    if not directory and not os.path.exists(target):
        with open(target, "w"):
            pass


def relocation(moves: list[tuple[str, str]]) -> Callable[[], None]:
    """Prepare re-pointing the interpreter at the sandbox's paths; call the result after the
    pivot. It rewrites sys.path, the prefixes and every imported module's __file__,
    __path__, spec and loader path, so lazy imports (sympy imports much of itself on first
    use) find their files. The new values are computed now, while host symlinks can still
    be resolved. Code objects keep their host file names: a traceback prints them, but
    nothing can be read there."""
    cache: dict[str, str] = {}

    def move(path: str) -> str:
        if path not in cache:
            cache[path] = path
            real = os.path.realpath(path) if os.path.isabs(path) else path
            for host, inside in moves:
                if real == host or real.startswith(host + os.sep):
                    cache[path] = inside + real[len(host) :]
                    break
        return cache[path]

    modules = list(sys.modules.values())
    for module in modules:
        _relocate_module(module, move, dry_run=True)
    new_path = [move(p) for p in sys.path if p and move(p) != p]
    new_path = [*dict.fromkeys(new_path), SITE]
    interpreter = os.path.basename(
        os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    )

    def apply() -> None:
        for module in modules:
            _relocate_module(module, move, dry_run=False)
        sys.path[:] = [p for p in new_path if os.path.isdir(p)]
        sys.path_importer_cache.clear()
        importlib.invalidate_caches()
        for attr in ("prefix", "exec_prefix", "base_prefix", "base_exec_prefix"):
            setattr(sys, attr, PREFIX)
        sys.executable = sys._base_executable = f"{PREFIX}/bin/{interpreter}"
        sysconfig = sys.modules.get("sysconfig")
        if sysconfig is not None and hasattr(sysconfig, "_CONFIG_VARS"):
            sysconfig._CONFIG_VARS = None
        linecache = sys.modules.get("linecache")
        if linecache is not None:
            linecache.clearcache()

    return apply


def _relocate_module(module: Any, move: Callable[[str], str], *, dry_run: bool) -> None:
    """Rewrite one module's paths with `move` (with dry_run, only fill move's cache)."""
    try:
        namespace = vars(module)
    except TypeError:
        return

    def fix(obj: Any, attr: str) -> None:
        value = getattr(obj, attr, None)
        if isinstance(value, str):
            new = move(value)
            if not dry_run and new != value:
                with contextlib.suppress(AttributeError, TypeError):
                    setattr(obj, attr, new)
        elif isinstance(value, list):
            new_list = [move(p) if isinstance(p, str) else p for p in value]
            if not dry_run:
                value[:] = new_list

    for attr in ("__file__", "__cached__", "__path__"):
        if attr in namespace:
            fix(module, attr)
    spec = namespace.get("__spec__")
    if spec is not None:
        for attr in ("origin", "submodule_search_locations", "cached"):
            with contextlib.suppress(Exception):  # `cached` is computed lazily; may fail
                fix(spec, attr)
    loader = namespace.get("__loader__")
    if loader is not None:
        fix(loader, "path")


def private_tmp(size_mb: int, uid: int) -> bool:
    """Give this process (a worker, before it drops privileges) its own mount namespace with
    a fresh, empty tmpfs on /tmp owned by `uid`. False when the kernel refuses."""
    if libc.unshare(0x00020000) != 0:  # CLONE_NEWNS
        return False
    options = f"size={size_mb}m,mode=0700,uid={uid},gid={uid}"
    return mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, options)


# -- landlock -----------------------------------------------------------------------------------

_LANDLOCK_CREATE_RULESET = 444
_LANDLOCK_ADD_RULE = 445
_LANDLOCK_RESTRICT_SELF = 446
_LANDLOCK_RULE_PATH_BENEATH = 1
# file-only rights: EXECUTE, WRITE_FILE, READ_FILE, TRUNCATE (v3), IOCTL_DEV (v5)
_FILE_RIGHTS = 0b1 | 0b10 | 0b100 | (1 << 14) | (1 << 15)
_READ = 0b1 | 0b100 | 0b1000  # EXECUTE, READ_FILE, READ_DIR


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 when Landlock is unavailable."""
    version = libc.syscall(_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(version, 0)


def _all_fs_rights(abi: int) -> int:
    rights = (1 << 13) - 1  # v1: bits 0..12
    if abi >= 2:
        rights |= 1 << 13  # REFER
    if abi >= 3:
        rights |= 1 << 14  # TRUNCATE
    if abi >= 5:
        rights |= 1 << 15  # IOCTL_DEV
    return rights


class Landlock:
    """A Landlock confinement prepared in the zygote (descriptors of the readable paths are
    opened once) and applied by each worker with its own writable directory."""

    def __init__(self, readable: Iterable[str], writable: Iterable[str]) -> None:
        self.abi = landlock_abi()
        self._fds: list[tuple[int, bool, bool]] = []  # fd, is_dir, writable
        if not self.abi:
            return
        for path, rw in [(p, False) for p in readable] + [(p, True) for p in writable]:
            with contextlib.suppress(OSError):
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
                self._fds.append((fd, os.path.isdir(path), rw))

    def restrict(self, workdir: str) -> str | None:
        """Confine this process; returns an error text or None. Closes the inherited fds."""
        rights = _all_fs_rights(self.abi)
        # ABI 6 scopes signals and abstract sockets: no signal to a process outside the domain
        attr = _RulesetAttr(rights, 0, 0b11 if self.abi >= 6 else 0)
        size = 8 if self.abi < 4 else (16 if self.abi < 6 else 24)
        ruleset = libc.syscall(
            _LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0)
        )
        if ruleset < 0:
            return f"landlock_create_ruleset: {os.strerror(ctypes.get_errno())}"
        try:
            own = os.open(workdir, os.O_PATH | os.O_CLOEXEC)
            for fd, is_dir, rw in [*self._fds, (own, True, True)]:
                access = rights if rw else _READ
                if not is_dir:
                    access &= _FILE_RIGHTS
                rule = _PathBeneath(access & rights, fd)
                if libc.syscall(
                    _LANDLOCK_ADD_RULE,
                    ctypes.c_int(ruleset),
                    ctypes.c_int(_LANDLOCK_RULE_PATH_BENEATH),
                    ctypes.byref(rule),
                    ctypes.c_uint32(0),
                ):
                    return f"landlock_add_rule: {os.strerror(ctypes.get_errno())}"
            os.close(own)
            if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
                return f"no_new_privs: {os.strerror(ctypes.get_errno())}"
            if libc.syscall(_LANDLOCK_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)):
                return f"landlock_restrict_self: {os.strerror(ctypes.get_errno())}"
        finally:
            os.close(ruleset)
            self.close()
        return None

    def fds(self) -> set[int]:
        return {fd for fd, _, _ in self._fds}

    def close(self) -> None:
        for fd, _, _ in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []
