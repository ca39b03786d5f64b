#!/usr/bin/env python3
"""embed.py IN OUT NAME: write OUT, a C file defining
`const char NAME[]` with the bytes of IN (how schema/postgres.sql gets into
the binary for `thumbfs schema`)."""
import sys

src, out, name = sys.argv[1:4]
data = open(src, "rb").read()
with open(out, "w") as f:
    f.write(f"/* generated from {src.split('/')[-1]} by scripts/embed.py */\n")
    f.write(f"extern const char {name}[];\nconst char {name}[] = {{\n")
    for i in range(0, len(data), 12):
        f.write("\t" + " ".join(f"0x{b:02x}," for b in data[i:i + 12]) + "\n")
    f.write("\t0x00,\n};\n")
