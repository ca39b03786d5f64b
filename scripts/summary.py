"""Print pytest's junit XML files (one per run) as one line:
'N passed, N failed[, N skipped]'.

Exit 1 when anything failed or nothing ran."""
import sys
import xml.etree.ElementTree as ET

suites = []
for path in sys.argv[1:]:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        print(f"thumbfs: no test report: {e}", file=sys.stderr)
        print("0 passed, 1 failed")
        sys.exit(1)
    suites += [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
total = sum(int(s.get("tests", 0)) for s in suites)
failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
skipped = sum(int(s.get("skipped", 0)) for s in suites)
passed = total - failed - skipped
line = f"{passed} passed, {failed} failed"
if skipped:
    line += f", {skipped} skipped"
print(line)
sys.exit(1 if failed or passed == 0 else 0)
