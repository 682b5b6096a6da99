#!/usr/bin/python3
"""Install a wheel into explicit directories: %pyproject_install's fallback.

Only used where the spec runs without pyproject-rpm-macros (Debian's rpm,
tools/build-packages).  ``python3 -m installer`` cannot be used there: it
takes its paths from the interpreter's default sysconfig scheme, which on
Debian is ``posix_local`` (/usr/local), not the RPM layout.
"""

from __future__ import annotations

import argparse

from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.sources import WheelFile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--destdir", required=True)
    parser.add_argument("--purelib", required=True)
    parser.add_argument("--scripts", required=True)
    parser.add_argument("--interpreter", required=True)
    parser.add_argument("wheels", nargs="+")
    args = parser.parse_args()
    scheme = {"purelib": args.purelib, "platlib": args.purelib, "scripts": args.scripts, "data": "/usr"}
    destination = SchemeDictionaryDestination(
        scheme,
        interpreter=args.interpreter,
        script_kind="posix",
        destdir=args.destdir,
        bytecode_optimization_levels=(),
    )
    for wheel in args.wheels:
        with WheelFile.open(wheel) as source:
            install(source, destination, {"INSTALLER": b"rpm"})


if __name__ == "__main__":
    main()
