"""Run a program from a pull request inside bubblewrap (`bwrap`), away from the bot.

What the program sees: the system directories read-only (/usr, /bin, /lib*, a few files of
/etc), the Python installation read-only (the embedded Terraform and the launcher below run on
it), the paths the caller lists (`read_only`, `writable`: the job's work dir, the Terraform
binary, the kubeconfig...), a fresh /tmp and a minimal /dev, and a /proc of its own PID
namespace. It runs as nobody (65534) in its own user, PID, IPC and UTS namespaces, without
capabilities. Nothing else of the host's filesystem exists for it: not `data_dir`, the config
file, the Redis socket, other jobs' work dirs or the workers' /proc/<pid>/environ. The network
is kept, because providers need it.

How it is started, and why (see `launch`):
- bwrap itself gets an empty environment (a job's `env` step could otherwise set LD_PRELOAD for
  a process outside the sandbox) and no secret on its command line: the job's environment goes
  through an in-memory file that the launcher inside reads.
- bwrap and its init ignore SIGINT and SIGTERM, and the launcher restores them for the program.
  runners.process signals the whole process group; without this, bwrap would die of the SIGINT
  meant to stop Terraform gracefully and take Terraform down with SIGKILL.
- The launcher is the PID namespace's init (`--as-pid-1`): when it exits, the kernel kills
  everything the program left running (even in a session of its own), at once; bwrap's own init
  would keep them alive, and the step waiting for them, until the process group was killed.
- The launcher holds the read end of a pipe whose write end only the job process has. When the
  job process dies, the pipe closes and the launcher interrupts the program (SIGINT to its
  group), as PR_SET_PDEATHSIG does for an unsandboxed process.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

BUBBLEWRAP = "bubblewrap"
NONE = "none"
NOBODY = 65534
HOSTNAME = "plankeeper-sandbox"
PROBE_TIMEOUT = 20.0

# Directories bound read-only (or re-created as the same symlink, on a merged /usr).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# Parts of /etc that programs need (users, DNS, TLS roots, dynamic linker, alternatives). Never
# all of /etc: a sandbox started by root maps nobody to root outside, which could read
# /etc/shadow, /etc/ssl/private or the SSH host keys if they were there.
ETC_ENTRIES = (
    "passwd", "group", "hosts", "resolv.conf", "nsswitch.conf", "host.conf", "gai.conf",
    "services", "protocols", "localtime", "timezone", "mime.types", "alternatives",
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "ssl/certs", "ssl/openssl.cnf",
    "ca-certificates", "ca-certificates.conf", "pki/tls/certs", "pki/ca-trust", "crypto-policies",
    "gitconfig", "ssh/ssh_config", "ssh/ssh_known_hosts",
)

# Runs inside the sandbox as `python -I -S -c LAUNCHER ENV_FD WATCH_FD ARGV...`.
LAUNCHER = r"""
import os, signal, sys, threading
env_fd, watch_fd, argv = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
with os.fdopen(env_fd, "rb") as f:
    env = dict(os.fsdecode(i).split("=", 1) for i in f.read().split(b"\0") if b"=" in i)
pid = os.fork()
if pid == 0:
    if watch_fd >= 0:
        os.close(watch_fd)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        os.write(2, ("sandbox: cannot run %s: %s\n" % (argv[0], exc.strerror)).encode())
        os._exit(127)

def watch():
    while os.read(watch_fd, 512):
        pass
    os.kill(0, signal.SIGINT)

if watch_fd >= 0:
    threading.Thread(target=watch, daemon=True).start()
status = os.waitpid(pid, 0)[1]
os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
"""


@dataclass(frozen=True)
class Sandbox:
    """Where a job's programs run: kind "bubblewrap" or "none" (directly, as before).

    read_only and writable are bound at the same path inside, so argument lists, the working
    directory and environment values need no translation; paths that do not exist are left out.
    """

    kind: str = NONE
    bwrap: str = "bwrap"
    read_only: tuple[Path, ...] = ()
    writable: tuple[Path, ...] = ()
    python: str = field(default_factory=lambda: sys.executable)

    @property
    def active(self) -> bool:
        return self.kind == BUBBLEWRAP

    def wrap(self, argv: Sequence[str], cwd: Path, env_fd: int, watch_fd: int = -1) -> list[str]:
        """The bwrap argument list that runs argv in cwd, with the environment read from env_fd
        (NUL-separated NAME=value) and interrupted when watch_fd reaches end of file (-1: never).
        Returns argv unchanged for kind "none"."""
        if not self.active:
            return list(argv)
        args = [
            self.bwrap, "--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY),
            "--unshare-pid", "--as-pid-1", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--hostname", HOSTNAME, "--cap-drop", "ALL",
        ]  # not --die-with-parent: bwrap would SIGKILL the program when the job dies (see watch_fd)
        args += _system_binds()
        args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--dir", "/var/tmp"]
        for path in self.writable:  # before the read-only paths: a read-only file inside stays so
            args += ["--bind-try", str(path), str(path)]
        for path in (*python_paths(self.python), *self.read_only):
            args += ["--ro-bind-try", str(path), str(path)]
        args += ["--chdir", str(cwd), "--", self.python, "-I", "-S", "-c", LAUNCHER,
                 str(env_fd), str(watch_fd), *argv]
        return args

    def launch(self, argv: Sequence[str], cwd: Path, env: Mapping[str, str]) -> Launch:
        """What runners.process hands to Popen; call .started() after Popen and .finished()
        once the process has exited."""
        if not self.active:
            return Launch(list(argv), dict(env))
        env_fd = os.memfd_create("plankeeper-env", 0)
        os.write(env_fd, b"".join(os.fsencode(f"{k}={v}") + b"\0" for k, v in env.items()))
        os.lseek(env_fd, 0, os.SEEK_SET)
        watch_read, watch_write = os.pipe()
        return Launch(self.wrap(argv, cwd, env_fd, watch_read), {}, (env_fd, watch_read),
                      _ignore_stop_signals, [env_fd, watch_read], [watch_write])


NO_SANDBOX = Sandbox()


@dataclass
class Launch:
    """One process start: argv and env for Popen, the fds it inherits, and the fds to close."""

    argv: list[str]
    env: dict[str, str]
    pass_fds: tuple[int, ...] = ()
    preexec: Callable[[], None] | None = None
    close_when_started: list[int] = field(default_factory=list)
    close_when_finished: list[int] = field(default_factory=list)

    def started(self) -> None:
        _close(self.close_when_started)

    def finished(self) -> None:
        _close(self.close_when_started)
        _close(self.close_when_finished)


def _close(fds: list[int]) -> None:
    while fds:
        try:
            os.close(fds.pop())
        except OSError:
            pass


def _ignore_stop_signals() -> None:
    """In the child, before exec: bwrap (and its init) must outlive the SIGINT and SIGTERM sent
    to the process group; the launcher restores them for the program it runs."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _system_binds() -> list[str]:
    args: list[str] = []
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for name in ETC_ENTRIES:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    return args


@cache
def python_paths(executable: str) -> tuple[Path, ...]:
    """The directories of the Python installation that runs executable (its prefixes and the
    real location of the binary), outside the system directories that are bound anyway."""
    real = Path(os.path.realpath(executable))
    found = [Path(p) for p in (sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix)]
    found.append(real.parent.parent if real.parent.name == "bin" else real.parent)
    out: list[Path] = []
    for path in found:
        if not any(path == Path(d) or Path(d) in path.parents for d in SYSTEM_DIRS) and path not in out:
            out.append(path)
    return tuple(out)


@cache
def probe(bwrap: str) -> str:
    """"" when bwrap can start a sandbox on this machine, else what went wrong (user namespaces
    are often disabled in containers); asked once per process."""
    box = Sandbox(BUBBLEWRAP, bwrap)
    launch = box.launch(["true"], Path("/"), {"PATH": "/usr/bin:/bin"})
    try:
        result = subprocess.run(launch.argv, env=launch.env, pass_fds=launch.pass_fds, capture_output=True,
                                check=False, timeout=PROBE_TIMEOUT, preexec_fn=launch.preexec)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{bwrap} could not be started ({exc})"
    finally:
        launch.finished()
    if result.returncode != 0:
        text = (result.stderr or result.stdout).decode("utf-8", "replace").strip().splitlines()
        return f"{bwrap} cannot create a sandbox here ({text[-1] if text else f'exit {result.returncode}'})"
    return ""
