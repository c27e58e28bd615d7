"""The host harnesses' closing: one line per check, then 'N passed, N failed', and the exit
status (non-zero on any failure)."""
import sys


def finish(checks):
    """`checks` maps each check's description to whether it passed."""
    failed = 0
    for name, ok in checks.items():
        print(("ok   " if ok else "FAIL ") + name)
        failed += not ok
    print(f"{len(checks) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
