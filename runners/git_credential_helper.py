"""A git credential helper that asks the job that runs `terraform init` (runners.git_credentials).

Git runs it as `python -I -S git_credential_helper.py SOCKET get` with the request (protocol,
host, path...) on stdin. For `get` it passes the request to the job's unix socket and prints
what the job answers (username and password for the repository's own forge, nothing for any
other host); `store` and `erase` do nothing, as nothing is ever kept. It imports nothing from
the package: it runs inside the sandbox with an isolated interpreter.
"""
import os
import socket
import sys

MAX_ANSWER = 64 * 1024
TIMEOUT = 10.0


def main(argv: list) -> int:
    if len(argv) != 3 or argv[2] != "get":
        return 0  # store / erase: nothing to do
    request = sys.stdin.buffer.read(MAX_ANSWER)
    directory, name = os.path.split(argv[1])
    try:
        os.chdir(directory)  # a relative name: a work dir's path may exceed a socket path's 107 bytes
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(TIMEOUT)
            conn.connect(name)
            conn.sendall(request)
            conn.shutdown(socket.SHUT_WR)
            answer = b""
            while len(answer) < MAX_ANSWER:
                chunk = conn.recv(MAX_ANSWER)
                if not chunk:
                    break
                answer += chunk
    except OSError:
        return 0  # the job no longer serves credentials: git goes on without them
    sys.stdout.buffer.write(answer)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
