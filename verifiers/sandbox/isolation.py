"""The isolation layers around a worker, set up once rather than per job.

Process-wide layers are applied by the zygote (the process that forks the workers) right
after it has imported the preloaded modules:
  - network: a new, empty network namespace (no interfaces but a down loopback);
  - filesystem: a private mount namespace where every mount is read-only, /tmp, /var/tmp and
    /dev/shm are fresh private tmpfs, and /proc is hidden behind an empty tmpfs.
Per-worker layers are applied in the forked child before it serves anything:
  - its own session/process group (the parent kills the whole group on timeout),
  - a private empty working directory, stdio on /dev/null,
  - rlimits on address space, CPU time, file size, open files, processes, core dumps,
  - its own unprivileged uid/gid (when started as root),
  - a seccomp filter (libseccomp via ctypes) denying socket creation, fork/clone/exec,
    ptrace and namespace/mount syscalls.
Each layer degrades gracefully: if the kernel or privileges do not allow it, the layer is
reported inactive (see `isolation_report`) and the others still apply.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import resource
from dataclasses import dataclass

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
PR_SET_PDEATHSIG = 1

_SCMP_ACT_ALLOW = 0x7FFF0000

# Syscalls a math program never needs and an escaping one would.
DENIED_SYSCALLS = (
    "socket",
    "socketpair",
    "connect",
    "bind",
    "listen",
    "accept",
    "accept4",
    "fork",
    "vfork",
    "clone",
    "execve",
    "execveat",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "unshare",
    "setns",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "setsid",
    "setpgid",
    "prctl",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "reboot",
    "swapon",
    "swapoff",
    "personality",
)
# clone3 must fail with ENOSYS (not EPERM) so glibc falls back to clone, which is then denied.
_ENOSYS_SYSCALLS = ("clone3",)

_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-worker resource limits."""

    memory_mb: int = 1024
    file_size_mb: int = 16
    open_files: int = 64


@dataclass(slots=True)
class Layer:
    name: str
    active: bool
    detail: str


def _errno_text() -> str:
    return os.strerror(ctypes.get_errno())


def _mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None
) -> bool:
    def enc(s: str | None) -> bytes | None:
        return s.encode() if s is not None else None

    return _libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)) == 0


def enter_network_namespace() -> Layer:
    if _libc.unshare(CLONE_NEWNET) == 0:
        return Layer("network", True, "private network namespace (no interfaces)")
    return Layer("network", False, f"unshare(CLONE_NEWNET) failed: {_errno_text()}")


def enter_filesystem_namespace(tmpfs_mb: int, needed: list[str]) -> Layer:
    """Private mount namespace: everything read-only, fresh tmpfs for the temp dirs, no /proc.

    `needed` are directories the unprivileged workers must read (the Python installation,
    sys.path); any of them below a directory others cannot enter (e.g. /root) is exposed
    by covering that directory with an empty tmpfs holding read-only binds of just them.
    """
    if _libc.unshare(CLONE_NEWNS) != 0:
        return Layer("filesystem", False, f"unshare(CLONE_NEWNS) failed: {_errno_text()}")
    if not _mount(None, "/", None, MS_REC | MS_PRIVATE, None):
        return Layer("filesystem", False, f"cannot make mounts private: {_errno_text()}")
    readonly = 0
    for mountpoint in _mountpoints():
        # a bind remount changes only this namespace's view; some (e.g. /proc subtrees) refuse
        if _mount(None, mountpoint, None, MS_BIND | MS_REMOUNT | MS_RDONLY, None):
            readonly += 1
    private = []
    for target in ("/tmp", "/var/tmp", "/dev/shm"):
        if os.path.isdir(target) and _private_tmpfs(target, tmpfs_mb, needed):
            private.append(target)
    if "/tmp" not in private:
        return Layer("filesystem", False, f"cannot mount a private /tmp: {_errno_text()}")
    closed = _closed(needed)
    exposed = _expose(needed)
    hidden = _mount(
        "tmpfs", "/proc", "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=0555"
    )
    detail = f"{readonly} mounts read-only, private tmpfs on {', '.join(private)}"
    if exposed:
        detail += f", only {', '.join(exposed)} visible inside {', '.join(closed)}"
    detail += ", /proc hidden" if hidden else f", /proc NOT hidden ({_errno_text()})"
    return Layer("filesystem", True, detail)


def _private_tmpfs(target: str, size_mb: int, needed: list[str]) -> bool:
    """Cover `target` with a fresh tmpfs, keeping the `needed` directories below it.

    A project or virtualenv checked out under /tmp (CI clones often are) must stay readable
    or the workers could not import the rest of sympy. Those directories are opened before
    the tmpfs hides them and bound back, read-only, from their descriptors (through
    /proc/self/fd, still mounted at this point). Mode 0711: workers cannot create files at
    the top, only in their own directory.
    """
    prefix = target.rstrip(os.sep) + os.sep
    keep = sorted({os.path.abspath(p) for p in needed if os.path.isdir(p)})
    keep = [p for p in keep if p.startswith(prefix)]
    keep = [p for p in keep if not any(p.startswith(q + os.sep) for q in keep if q != p)]
    handles = [(path, os.open(path, os.O_PATH | os.O_DIRECTORY)) for path in keep]
    try:
        options = f"size={size_mb}m,mode=0711"
        if not _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, options):
            return False
        for path, fd in handles:
            os.makedirs(path, mode=0o755, exist_ok=True)
            if _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC, None):
                _mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY, None)
        return True
    finally:
        for _, fd in handles:
            os.close(fd)


def _closed_ancestor(path: str) -> str | None:
    """The topmost ancestor of `path` that others may not enter (no o+x), if any."""
    parts = os.path.abspath(path).split(os.sep)[1:]
    current = ""
    for part in parts[:-1]:
        current += os.sep + part
        try:
            if not os.stat(current).st_mode & 0o001:
                return current
        except OSError:
            return None
    return None


def _closed(paths: list[str]) -> list[str]:
    return sorted({a for p in paths if (a := _closed_ancestor(p)) is not None})


def _expose(needed: list[str]) -> list[str]:
    """Make `needed` readable to other uids; returns the paths it had to expose."""
    paths = sorted({os.path.abspath(p) for p in needed if os.path.isdir(p)})
    # keep only outermost paths: binding a parent already exposes its children
    paths = [p for p in paths if not any(p.startswith(q + os.sep) for q in paths if q != p)]
    paths = [p for p in paths if _closed_ancestor(p) is not None]
    if not paths:
        return []
    stage = "/tmp/.expose"
    os.makedirs(stage, exist_ok=True)
    staged = []
    for n, path in enumerate(paths):
        target = f"{stage}/{n}"
        os.mkdir(target)
        if _mount(path, target, None, MS_BIND | MS_REC, None):
            staged.append((path, target))
    for ancestor in _closed(paths):
        _mount("tmpfs", ancestor, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    exposed = []
    for path, target in staged:
        os.makedirs(path, mode=0o755, exist_ok=True)
        if _mount(target, path, None, MS_BIND | MS_REC, None):
            _mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY, None)
            exposed.append(path)
        _libc.umount2(target.encode(), 2)  # MNT_DETACH
    for _, target in staged:
        os.rmdir(target)
    os.rmdir(stage)
    return exposed


def _mountpoints() -> list[str]:
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as fh:
            points = [line.split()[4] for line in fh]
    except OSError:
        return ["/"]
    # octal escapes (e.g. \040 for space) appear in mountinfo paths
    return [p.encode().decode("unicode_escape") for p in points]


class Seccomp:
    """A loaded libseccomp (ctypes). Load it in the zygote: finding the library runs ldconfig,
    which the forked workers could not do any more."""

    def __init__(self) -> None:
        self.error: str | None = None
        self._lib = None
        name = ctypes.util.find_library("seccomp")
        if name is None:
            self.error = "libseccomp not found (apt-get install libseccomp2)"
            return
        try:
            lib = ctypes.CDLL(name, use_errno=True)
        except OSError as exc:
            self.error = f"cannot load {name}: {exc}"
            return
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_init.argtypes = [ctypes.c_uint32]
        lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
        lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_rule_add.restype = ctypes.c_int
        lib.seccomp_rule_add.argtypes = [
            ctypes.c_void_p,
            ctypes.c_uint32,
            ctypes.c_int,
            ctypes.c_uint,
        ]
        lib.seccomp_load.restype = ctypes.c_int
        lib.seccomp_load.argtypes = [ctypes.c_void_p]
        lib.seccomp_release.argtypes = [ctypes.c_void_p]
        self._lib = lib

    @property
    def available(self) -> bool:
        return self._lib is not None

    def install(self) -> str | None:
        """Install the deny-list filter on this process; returns an error text or None."""
        lib = self._lib
        if lib is None:
            return self.error
        ctx = lib.seccomp_init(_SCMP_ACT_ALLOW)
        if not ctx:
            return "seccomp_init failed"
        try:
            rules = [(n, errno.EPERM) for n in DENIED_SYSCALLS]
            rules += [(n, errno.ENOSYS) for n in _ENOSYS_SYSCALLS]
            for name, err in rules:
                nr = lib.seccomp_syscall_resolve_name(name.encode())
                if nr < 0:  # not a syscall on this architecture
                    continue
                rc = lib.seccomp_rule_add(ctx, 0x00050000 | err, nr, 0)
                if rc != 0:
                    return f"seccomp_rule_add({name}) failed: {os.strerror(-rc)}"
            rc = lib.seccomp_load(ctx)
            if rc != 0:
                return f"seccomp_load failed: {os.strerror(-rc)}"
        finally:
            lib.seccomp_release(ctx)
        return None


def set_parent_death_signal() -> None:
    # the worker must not outlive the zygote (which forked it) if that one is killed
    _libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)


def apply_rlimits(limits: Limits) -> None:
    """Caps that hold even if every other layer is missing. Failure modes: none raised; a
    limit the kernel refuses is left as it was."""
    mb = 1024 * 1024
    for which, value in (
        (resource.RLIMIT_AS, limits.memory_mb * mb),
        (resource.RLIMIT_FSIZE, limits.file_size_mb * mb),
        (resource.RLIMIT_NOFILE, limits.open_files),
        (resource.RLIMIT_CORE, 0),
    ):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(which, (value, value))


def limit_processes() -> None:
    # RLIMIT_NPROC counts the processes and threads of the uid; with a uid of its own the
    # worker is the only one, so 1 means: no new process, no new thread. Root ignores it.
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NPROC, (1, 1))


def limit_cpu_seconds(seconds: int) -> None:
    """Let the process use `seconds` more CPU seconds, then die of SIGXCPU (a backstop for
    when the parent is gone and cannot enforce the wall-clock timeout)."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    total = int(used.ru_utime + used.ru_stime) + seconds
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY:
        total = min(total, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CPU, (total, hard))


def drop_privileges(uid: int) -> bool:
    """Become `uid`/`uid` with no supplementary groups; False when not running as root."""
    if os.geteuid() != 0:
        return False
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    return True


def redirect_stdio() -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)


SECRET_MARKERS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH", "COOKIE")
_KEPT_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "PYTHONPATH", "PYTHONHASHSEED")
# numeric libraries must not try to start thread pools in a worker that cannot make threads
_SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
}


def scrubbed_environment(env: dict[str, str]) -> dict[str, str]:
    """An allow-list environment for the zygote (and so every worker): no keys or tokens."""
    kept = {k: v for k, v in env.items() if k in _KEPT_ENV or k.startswith("LC_")}
    kept = {k: v for k, v in kept.items() if not any(m in k.upper() for m in SECRET_MARKERS)}
    kept["HOME"] = "/nonexistent"
    kept["PYTHONDONTWRITEBYTECODE"] = "1"
    kept.update(_SINGLE_THREAD_ENV)
    return kept
