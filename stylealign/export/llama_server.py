"""`python -m stylealign.export.llama_server [--parent-fd FD [--tmp DIR]] --config_file FILE`: llama-cpp-python's
OpenAI server, with the buffers that run on this CPU (llamacpp.plain_buffers_on_amx), that exits with its parent.

`stylealign serve` passes the read end of a pipe whose write end only it holds (--parent-fd) and its temporary
folder (--tmp); the other arguments go to llama-cpp-python's server unchanged.
"""

import argparse
import os
import runpy
import shutil
import sys
import threading

from stylealign.export.llamacpp import plain_buffers_on_amx


def exit_with_parent(fd: int, tmp: str | None = None) -> threading.Thread:
    """Exit this process (removing `tmp`) as soon as the process holding the write end of pipe `fd` is gone.

    The kernel closes every file of a dead process, kill -9 included, so the read returns EOF at once: no
    polling, unlike watching os.getppid() (which a subreaper also confuses), and unlike Linux's
    prctl(PR_SET_PDEATHSIG) it is portable and fires on the death of the process, not of the thread that
    forked. The parent never writes; it stops the server with a signal while it lives."""
    def watch():
        try:
            while os.read(fd, 1):
                pass
        except OSError:
            pass
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)  # the parent had no chance to remove it
        os._exit(1)  # nobody is left to read an answer: no graceful shutdown to wait for

    thread = threading.Thread(target=watch, name="exit-with-parent", daemon=True)
    thread.start()
    return thread


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--parent-fd", type=int)
    parser.add_argument("--tmp")
    ours, rest = parser.parse_known_args(argv)
    if ours.parent_fd is not None:
        exit_with_parent(ours.parent_fd, ours.tmp)
    sys.argv = [sys.argv[0], *rest]
    plain_buffers_on_amx()
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
