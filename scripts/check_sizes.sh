#!/usr/bin/env bash
# Every library and binary source file stays under 600 lines (test files and the CLI's scenario
# tests are exempt); functions are held to 120 lines by clippy::too_many_lines (clippy.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
over=$(git ls-files --cached --others --exclude-standard '*.rs' | grep -Ev '(^|/)tests/|(^|/)tests\.rs$|^fuzz/|^benches/' \
    | xargs wc -l | awk '$2 != "total" && $1 > 600 { print "  " $2 ": " $1 " lines" }')
if [ -n "$over" ]; then
    echo "source files over 600 lines (split them by what they do):" >&2
    echo "$over" >&2
    exit 1
fi
