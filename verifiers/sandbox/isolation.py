"""Process isolation primitives: namespaces, seccomp, credentials, rlimits, environment.

The zygote (the process that forks the workers) enters its namespaces once, right after it
has imported the preloaded modules:
  - user namespace, only when not started as root (it grants the mount and network
    namespaces to an unprivileged user);
  - mount namespace, used to build the minimal filesystem (see filesystem.py);
  - network namespace: no interfaces but a down loopback.
Each forked worker then applies, before it reads its job:
  - its own session/process group and a parent-death signal,
  - rlimits on address space, CPU time, file size, open files, processes, core dumps,
  - its own unprivileged uid/gid (as root), or no capabilities (inside a user namespace),
  - a seccomp filter compiled once in the zygote (libseccomp via ctypes) and loaded with
    one prctl: no sockets, fork/clone/exec, ptrace, signals to other processes, namespace,
    mount or file-handle syscalls.
A layer that cannot be set up is reported inactive (never silently assumed), see report.py.
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
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2

libc = ctypes.CDLL(None, use_errno=True)

# Syscalls a math program never needs and an escaping or interfering one would.
DENIED_SYSCALLS = (
    # network and new local channels (the worker's own socket is already open)
    "socket",
    "socketpair",
    "connect",
    "bind",
    "listen",
    "accept",
    "accept4",
    # new processes and programs: a fork could outlive its job
    "fork",
    "vfork",
    "clone",
    "execve",
    "execveat",
    # reaching other processes: their memory, their descriptors, signals
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kill",
    "tkill",
    "tgkill",
    "rt_sigqueueinfo",
    "rt_tgsigqueueinfo",
    "pidfd_open",
    "pidfd_send_signal",
    "pidfd_getfd",
    # leaving the sandbox's view of the system
    "unshare",
    "setns",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "open_by_handle_at",
    "name_to_handle_at",
    "setsid",
    "setpgid",
    "prctl",
    # kernel attack surface
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
_SCMP_ACT_ALLOW = 0x7FFF0000
_SCMP_ACT_ERRNO = 0x00050000
_SCMP_FLTATR_CTL_NNP = 3


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-worker resource limits."""

    memory_mb: int = 1024
    file_size_mb: int = 16
    open_files: int = 64


@dataclass(slots=True)
class Layer:
    """One isolation layer as the zygote set it up: `mode` names the mechanism in use
    ("pivot_root", "landlock", ...; "" when inactive)."""

    name: str
    active: bool
    detail: str
    mode: str = ""


def os_error(what: str) -> OSError:
    code = ctypes.get_errno()
    return OSError(code, f"{what}: {os.strerror(code)}")


def mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None
) -> bool:
    def enc(s: str | None) -> bytes | None:
        return s.encode() if s is not None else None

    return libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)) == 0


# statvfs f_flag bits -> the mount flags a bind remount must repeat (inside a user namespace
# the kernel refuses to clear flags the outer mount has locked).
_LOCKED_FLAGS = ((2, 0x2), (4, 0x4), (8, 0x8), (1024, 1024), (2048, 2048), (4096, 1 << 21))


def mount_flags_of(path: str) -> int:
    try:
        f_flag = os.statvfs(path).f_flag
    except OSError:
        return 0
    return sum(ms for st, ms in _LOCKED_FLAGS if f_flag & st)


# -- namespaces ---------------------------------------------------------------------------------


def enter_user_namespace() -> str | None:
    """Become root of a new user namespace mapped to the caller's uid/gid (for a caller that
    is not root). Returns an error text or None."""
    uid, gid = os.geteuid(), os.getegid()
    if libc.unshare(CLONE_NEWUSER) != 0:
        return f"unshare(CLONE_NEWUSER) failed: {os.strerror(ctypes.get_errno())}"
    try:
        with open("/proc/self/setgroups", "w") as fh:
            fh.write("deny")
        with open("/proc/self/uid_map", "w") as fh:
            fh.write(f"0 {uid} 1")
        with open("/proc/self/gid_map", "w") as fh:
            fh.write(f"0 {gid} 1")
    except OSError as exc:
        return f"cannot map ids in the user namespace: {exc.strerror}"
    return None


def enter_mount_namespace() -> str | None:
    if libc.unshare(CLONE_NEWNS) != 0:
        return f"unshare(CLONE_NEWNS) failed: {os.strerror(ctypes.get_errno())}"
    return None


def enter_network_namespace() -> Layer:
    if libc.unshare(CLONE_NEWNET) == 0:
        return Layer("network", True, "private network namespace (no interfaces)", "netns")
    return Layer(
        "network", False, f"unshare(CLONE_NEWNET) failed: {os.strerror(ctypes.get_errno())}"
    )


# -- seccomp ------------------------------------------------------------------------------------


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class Seccomp:
    """The deny-list filter, compiled to BPF once in the zygote with libseccomp (finding the
    library runs ldconfig, which a worker could not) and loaded by each worker with a single
    prctl, so a fork per job pays microseconds for it."""

    def __init__(self) -> None:
        self.error: str | None = None
        self._program: ctypes.Array[ctypes.c_char] | None = None
        self._fprog: _SockFprog | None = None
        try:
            self._program = ctypes.create_string_buffer(self._compile())
        except OSError as exc:
            self.error = str(exc)
            return
        self._fprog = _SockFprog(len(self._program.raw) // 8, ctypes.addressof(self._program))

    @property
    def available(self) -> bool:
        return self._fprog is not None

    @staticmethod
    def _compile() -> bytes:
        name = ctypes.util.find_library("seccomp")
        if name is None:
            raise OSError("libseccomp not found (apt-get install libseccomp2)")
        lib = ctypes.CDLL(name, use_errno=True)
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_init.argtypes = [ctypes.c_uint32]
        lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_rule_add.argtypes = [
            ctypes.c_void_p,
            ctypes.c_uint32,
            ctypes.c_int,
            ctypes.c_uint,
        ]
        lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
        lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.seccomp_release.argtypes = [ctypes.c_void_p]
        ctx = lib.seccomp_init(_SCMP_ACT_ALLOW)
        if not ctx:
            raise OSError("seccomp_init failed")
        try:
            lib.seccomp_attr_set(ctx, _SCMP_FLTATR_CTL_NNP, 0)  # the worker sets it itself
            rules = [(n, errno.EPERM) for n in DENIED_SYSCALLS]
            rules += [(n, errno.ENOSYS) for n in _ENOSYS_SYSCALLS]
            for syscall, err in rules:
                nr = lib.seccomp_syscall_resolve_name(syscall.encode())
                if nr < 0:  # not a syscall on this architecture
                    continue
                rc = lib.seccomp_rule_add(ctx, _SCMP_ACT_ERRNO | err, nr, 0)
                if rc != 0:
                    raise OSError(f"seccomp_rule_add({syscall}) failed: {os.strerror(-rc)}")
            read_end, write_end = os.pipe()
            try:
                rc = lib.seccomp_export_bpf(ctx, write_end)
                os.close(write_end)
                write_end = -1
                if rc != 0:
                    raise OSError(f"seccomp_export_bpf failed: {os.strerror(-rc)}")
                chunks = []
                while chunk := os.read(read_end, 1 << 16):
                    chunks.append(chunk)
            finally:
                os.close(read_end)
                if write_end >= 0:
                    os.close(write_end)
        finally:
            lib.seccomp_release(ctx)
        program = b"".join(chunks)
        if not program or len(program) % 8:
            raise OSError("seccomp_export_bpf produced no program")
        return program

    def install(self) -> str | None:
        """Load the filter on this process (irreversible); returns an error text or None."""
        if self._fprog is None:
            return self.error
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return f"no_new_privs: {os.strerror(ctypes.get_errno())}"
        if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(self._fprog), 0, 0) != 0:
            return f"seccomp filter refused: {os.strerror(ctypes.get_errno())}"
        return None


# -- credentials, limits ------------------------------------------------------------------------


def set_parent_death_signal() -> None:
    # the worker must not outlive the zygote (which forked it) if that one is killed
    libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)


def apply_rlimits(limits: Limits, cpu_seconds: int) -> None:
    """Caps that hold even if every other layer is missing. RLIMIT_CPU is a backstop for
    when the parent is gone and cannot enforce the wall-clock timeout. Failure modes: none
    raised; a limit the kernel refuses is left as it was."""
    mb = 1024 * 1024
    for which, value in (
        (resource.RLIMIT_AS, limits.memory_mb * mb),
        (resource.RLIMIT_FSIZE, limits.file_size_mb * mb),
        (resource.RLIMIT_NOFILE, limits.open_files),
        (resource.RLIMIT_CORE, 0),
    ):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(which, (value, value))
    limit_cpu_seconds(cpu_seconds)


def limit_processes() -> None:
    # RLIMIT_NPROC counts the processes and threads of the uid; with a uid of its own the
    # worker is the only one, so 1 means: no new process, no new thread. Root ignores it.
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NPROC, (1, 1))


def limit_cpu_seconds(seconds: int) -> None:
    """Let the process use `seconds` more CPU seconds, then die of SIGXCPU."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    total = int(used.ru_utime + used.ru_stime) + seconds
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY:
        total = min(total, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CPU, (total, hard))


def drop_privileges(uid: int) -> None:
    """Become `uid`/`uid` with no supplementary groups (and so no capabilities)."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def drop_capabilities() -> str | None:
    """Clear every capability (root of a user namespace keeps its uid but loses its powers
    over the namespace's mounts and files). Returns an error text or None."""
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (_CapData * 2)()
    if libc.capset(ctypes.byref(header), data) != 0:
        return f"capset: {os.strerror(ctypes.get_errno())}"
    return None


def closed_ancestor(path: str) -> str | None:
    """The topmost ancestor of `path` that other users may not enter (no o+x), if any."""
    current = ""
    for part in os.path.abspath(path).split(os.sep)[1:-1]:
        current += os.sep + part
        try:
            if not os.stat(current).st_mode & 0o001:
                return current
        except OSError:
            return None
    return None


# -- environment --------------------------------------------------------------------------------

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
