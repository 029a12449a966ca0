"""A private Xvfb for the tests that need a real window."""
import contextlib
import os
import subprocess


@contextlib.contextmanager
def xvfb(screen="1280x1024x24"):
    """Start Xvfb on a free display; -displayfd tells us the display once it is ready, so a host
    started next never races it. Yields ":N"."""
    read, write = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", screen, "-nolisten", "tcp"],
                            pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as f:
        number = f.readline().strip()
    try:
        if not number:
            raise RuntimeError("Xvfb did not start")
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(10)
