"""The command lines that start the sandbox runner, and what to say when they cannot start.

Sandboxed, the runner starts as::

    bwrap [namespaces, read-only binds, tmpfs] -- [setpriv: drop to a spare uid] -- prlimit -- py

bubblewrap gives new pid, network, ipc and uts namespaces (no network, no host processes in
sight), a root holding only read-only binds of /usr, the loader cache and the interpreter's
prefix, and one size-capped tmpfs as the only writable place. As root, bubblewrap runs privileged
without a user namespace and ``setpriv`` drops the runner to a uid no account uses, picked per run
so concurrent runs never share a process count (a user namespace would map the sandbox uid to
real root, which ``RLIMIT_NPROC`` exempts). As any other user, a user namespace keeps the caller's
uid and ``--disable-userns`` stops the code from making nested ones. ``prlimit`` sets the limits
inside, last, so they count only the sandbox's processes and bind the runner, not bubblewrap.

The weak mode (:func:`weak_command`) is ``prlimit -- python`` with a cleared environment: it only
exists for machines where bubblewrap cannot run and the caller opted in.
"""

from __future__ import annotations

import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from refine.errors import ConfigError

if TYPE_CHECKING:
    from postprocess.sandbox.models import SandboxLimits

__all__ = [
    "SANDBOX_DIR",
    "SandboxUnavailable",
    "Tools",
    "explain_start_failure",
    "find_tools",
    "prlimit_args",
    "sandbox_command",
    "sandbox_env",
    "spare_uid",
    "weak_command",
]

SANDBOX_DIR = "/sandbox"
"""The sandbox's home and working directory: a tmpfs, with /tmp a link to /sandbox/tmp."""

# systemd leaves 0x70000000-0x7FFFFFFF to no one (below: containers; above: signedness bugs).
_SPARE_UID_FIRST = 0x7100_0000
_SPARE_UID_COUNT = 1 << 24
_PATH = "/usr/local/bin:/usr/bin:/bin"
_TOP_LEVEL = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")  # links into /usr on Debian
_ETC_FILES = ("/etc/ld.so.cache", "/etc/localtime")  # the loader's cache, time zones; nothing else
_INSTALL = "install bubblewrap: apt-get install bubblewrap (Debian/Ubuntu), dnf install bubblewrap"
_USERNS_FIX = (
    "user namespaces are disabled for non-root users: allow them "
    "(sysctl -w kernel.unprivileged_userns_clone=1 on older Debian kernels, "
    "sysctl -w user.max_user_namespaces=15000, or on Ubuntu 24.04+ "
    "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0), or run as root"
)
_MOUNT_FIX = (
    "this machine (usually a container) forbids the namespaces and mounts bubblewrap needs: run "
    "the container with --security-opt seccomp=unconfined --security-opt apparmor=unconfined "
    "--cap-add SYS_ADMIN, or on a VM"
)


class SandboxUnavailable(ConfigError):
    """Bubblewrap is missing or cannot start here, so generated code is not run at all."""


@dataclass(frozen=True)
class Tools:
    """Absolute paths of the programs a run needs; ``setpriv`` only when running as root."""

    bwrap: str | None
    prlimit: str
    setpriv: str | None


def find_tools(bwrap: str, *, as_root: bool, need_bwrap: bool = True) -> Tools:
    """Locate bwrap, prlimit and (as root) setpriv, or say which package provides the missing one.

    Raises:
        SandboxUnavailable: a needed program is missing.
    """
    found = shutil.which(bwrap)
    if found is None and need_bwrap:
        raise SandboxUnavailable(
            f"bubblewrap ({bwrap!r}) was not found, so generated code cannot run safely; {_INSTALL}"
        )
    prlimit = shutil.which("prlimit")
    setpriv = shutil.which("setpriv")
    if prlimit is None or (as_root and setpriv is None):
        missing = "prlimit" if prlimit is None else "setpriv"
        raise SandboxUnavailable(f"{missing} was not found; install util-linux")
    return Tools(bwrap=found, prlimit=prlimit, setpriv=setpriv if as_root else None)


def spare_uid() -> int:
    """A uid no account uses, fresh per run, so each run has its own ``RLIMIT_NPROC`` count."""
    return _SPARE_UID_FIRST + secrets.randbelow(_SPARE_UID_COUNT)


def sandbox_env(home: str) -> dict[str, str]:
    """The whole environment the code sees: no API keys, no proxies, nothing from the host."""
    return {
        "PATH": _PATH,
        "HOME": home,
        "TMPDIR": f"{home}/tmp" if home == SANDBOX_DIR else home,
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        # set and dict order, and so the text of errors, must not change between identical runs
        "PYTHONHASHSEED": "0",
    }


def prlimit_args(prlimit: str, limits: SandboxLimits) -> list[str]:
    """``prlimit`` options for the limits; the CPU hard limit is one second past the soft one.

    The soft limit sends SIGXCPU, which the exit status shows; at the hard one the kernel kills.
    """
    cpu = limits.cpu_seconds
    return [
        prlimit,
        f"--cpu={cpu}:{cpu + 1}",
        f"--as={limits.memory_bytes}",
        f"--nproc={limits.max_processes}",
        f"--fsize={limits.max_file_bytes}",
        "--core=0",
        "--",
    ]


def _python_root(python: Path) -> PurePosixPath | None:
    """The interpreter's prefix (``bin/..``) when /usr does not already hold it."""
    root = PurePosixPath(python).parent.parent
    usr = PurePosixPath("/usr")
    return None if root == usr or usr in root.parents else root


def _binds(python: Path) -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for top in _TOP_LEVEL:
        path = Path(top)
        if path.is_symlink():
            args += ["--symlink", str(path.readlink()), top]
        elif path.is_dir():
            args += ["--ro-bind", top, top]
    for name in _ETC_FILES:
        args += ["--ro-bind-try", name, name]
    root = _python_root(python)
    if root is not None:
        # Directories bubblewrap makes on the way copy the host's modes (/root is 0700), so make
        # them world-searchable: they stay empty but for the one read-only bind.
        for parent in reversed(root.parents[:-1]):
            args += ["--perms", "0755", "--dir", str(parent)]
        args += ["--ro-bind", str(root), str(root)]
    return args


def sandbox_command(
    tools: Tools, limits: SandboxLimits, python: Path, inner: list[str], *, uid: int | None
) -> list[str]:
    """The full bwrap command that runs ``inner`` (a python command line) inside the sandbox.

    ``uid`` set means we are root: bubblewrap runs privileged and setpriv drops to that uid.
    """
    if tools.bwrap is None:
        raise SandboxUnavailable(f"bubblewrap was not found; {_INSTALL}")
    namespaces = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts"]
    namespaces.append("--unshare-cgroup-try")
    if uid is None:
        namespaces = ["--unshare-user", "--disable-userns", *namespaces]
    args = [tools.bwrap, *namespaces, "--die-with-parent", "--new-session", "--clearenv"]
    for name, value in sandbox_env(SANDBOX_DIR).items():
        args += ["--setenv", name, value]
    scratch = str(limits.scratch_bytes)
    args += _binds(python)
    args += ["--dev", "/dev", "--proc", "/proc"]
    args += ["--perms", "01777", "--size", scratch, "--tmpfs", SANDBOX_DIR]
    args += ["--perms", "01777", "--dir", f"{SANDBOX_DIR}/tmp", "--symlink", f"{SANDBOX_DIR}/tmp"]
    args += ["/tmp", "--perms", "01777", "--size", scratch, "--tmpfs", "/dev/shm"]
    args += ["--chdir", SANDBOX_DIR, "--"]
    if uid is not None:
        if tools.setpriv is None:
            raise SandboxUnavailable("setpriv was not found; install util-linux")
        args += [tools.setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
        args += ["--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
    return args + prlimit_args(tools.prlimit, limits) + inner


def weak_command(tools: Tools, limits: SandboxLimits, inner: list[str]) -> list[str]:
    """The unsandboxed command: resource limits only, for hosts that opted out of bubblewrap."""
    return prlimit_args(tools.prlimit, limits) + inner


def explain_start_failure(output: str, exit_status: int) -> str:
    """Turn bubblewrap's complaint into a message that names the likely fix."""
    said = output.strip()[-1500:] or "(no output)"
    lower = said.lower()
    if "namespace" in lower or "uid map" in lower or "uid_map" in lower:
        fix = _USERNS_FIX
    elif "operation not permitted" in lower or "permission denied" in lower:
        fix = _MOUNT_FIX
    else:
        fix = "check that `bwrap --unshare-all --ro-bind / / true` works on this machine"
    return (
        f"the code sandbox did not start (exit status {exit_status}): {said}\n"
        f"fix: {fix}; or, accepting the risk, allow the weak unsandboxed mode"
    )
