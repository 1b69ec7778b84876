#!/usr/bin/env python3
"""What the image builds and CI read from runtimes.toml (the service's table of languages).

  runtimes.py images               each image named by a runtime, one a line, in table order
  runtimes.py packages [IMAGE]     the Debian packages of every runtime (or of IMAGE's), sorted,
                                   space-separated
  runtimes.py versions [IMAGE]     each runtime's version command (or IMAGE's), a shell line each

The file is runtimes.toml beside images/, or $EXECBOX_RUNTIMES_FILE.
"""
import os
import shlex
import sys
import tomllib

here = os.path.dirname(os.path.abspath(__file__))
path = os.environ.get("EXECBOX_RUNTIMES_FILE") or os.path.join(here, "..", "runtimes.toml")
with open(path, "rb") as f:
    runtimes = tomllib.load(f)["runtime"]


def of(image):
    return [r for r in runtimes if image is None or r.get("image") == image]


cmd, image = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else None)
if cmd == "images":
    seen = []
    for r in runtimes:
        if r.get("image") and r["image"] not in seen:
            seen.append(r["image"])
    print("\n".join(seen))
elif cmd == "packages":
    print(" ".join(sorted({p for r in of(image) for p in r.get("packages", [])})))
elif cmd == "versions":
    print("\n".join(shlex.join(r["version"]) for r in of(image)))
else:
    sys.exit(f"runtimes.py: unknown command {cmd!r}; see its docstring")
