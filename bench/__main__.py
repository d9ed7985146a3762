"""``python -m bench``: see bench/run.py."""
import signal
import sys

from bench.run import main

if __name__ == "__main__":
    # SIGTERM (a scheduler or a timeout stopping the run) unwinds like Ctrl-C,
    # so the zygote is stopped and the working directory removed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    main()
    sys.exit(0)
