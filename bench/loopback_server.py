"""Starting `blip3 serve` on loopback for the bench scripts (standard library only)."""

import re
import subprocess
import threading


def start(blip3, model, *flags):
    """Starts `blip3 serve --model MODEL` on 127.0.0.1 and a free port.

    Returns (process, host, port, log): `log` is a list that collects the
    server's stderr lines after the start line, as they come.
    """
    proc = subprocess.Popen([blip3, "serve", "--model", model, "--host", "127.0.0.1", "--port", "0", *flags],
                            stderr=subprocess.PIPE, text=True)
    while True:
        line = proc.stderr.readline()
        if not line:
            raise SystemExit("server did not start")
        m = re.search(r"on http://([0-9.]+):([0-9]+)/v1", line)
        if m:
            break
    log = []
    threading.Thread(target=lambda: log.extend(proc.stderr), daemon=True).start()
    return proc, m.group(1), int(m.group(2)), log
