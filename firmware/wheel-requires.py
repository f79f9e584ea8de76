"""Print the unconditional Requires-Dist lines of a wheel, sorted (the wheel set's inputs)."""

import sys
import zipfile

with zipfile.ZipFile(sys.argv[1]) as z:
    meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    lines = z.read(meta).decode().splitlines()
reqs = sorted(line.split(": ", 1)[1] for line in lines if line.startswith("Requires-Dist: "))
print("\n".join(r for r in reqs if "extra ==" not in r))
