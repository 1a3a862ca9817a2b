"""The child process of the fuzzer: ``python -m tests.fuzz.child LISTING.json``.

Caps its own address space (``RLIMIT_AS``), then loads each case of the listing under a
per-case alarm and prints one JSON line when it starts a case and one with the outcome, so
the parent knows which case a hang or a crash belongs to.
"""
import json
import os
import resource
import signal
import sys
import time
import tracemalloc


class CaseTimeout(BaseException):
    """Raised by the alarm; a BaseException so that loaders' ``except Exception`` pass it."""


def _on_alarm(signum, frame):
    raise CaseTimeout()


def main(listing_path: str) -> int:
    with open(listing_path) as handle:
        listing = json.load(handle)
    limit = int(listing["memory"])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from convkit.errors import ConvkitError
    from tests.fuzz.harness import load_function
    from tests.fuzz.targets import Rejected
    signal.signal(signal.SIGALRM, _on_alarm)
    loaders = {}
    tracemalloc.start()
    for name, path in listing["cases"]:
        print(json.dumps({"start": path}), flush=True)
        if name not in loaders:
            # Imports and first-use set-up happen here, outside the alarm and the memory
            # count: the first case of each target is loaded once unmeasured.
            loaders[name] = load_function(listing["loads"][name])
            getattr(loaders[name], "prepare", lambda: None)()
            signal.setitimer(signal.ITIMER_REAL, listing["case_seconds"] * 4)
            try:
                loaders[name](path)
            except Exception:  # noqa: BLE001 - measured below
                pass
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        error = ""
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        start = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, listing["case_seconds"])
        try:
            loaders[name](path)
            outcome = "loaded"
        except CaseTimeout:
            outcome = "timeout"
        except ConvkitError as exc:
            outcome, error = "clean", f"{type(exc).__name__}: {exc}"
        except Rejected as exc:
            outcome, error = "rejected", str(exc)
        except FileNotFoundError as exc:          # never expected: the file is there
            outcome, error = "other", f"{type(exc).__name__}: {exc}"
        except BaseException as exc:  # noqa: BLE001 - counting every other kind is the point
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            outcome, error = "other", f"{type(exc).__name__}: {exc}"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1] - base
        print(json.dumps({"path": path, "outcome": outcome, "error": error[:400],
                          "peak": peak, "size": os.path.getsize(path),
                          "seconds": round(seconds, 4)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
