#!/usr/bin/env bash
# CPython 3.11's own Lib/test/test_concurrent_futures.py against picklepool.Executor.
# usage: run.sh [--venv VENV] [--work DIR] [--file PATH]
#   --venv  a venv with picklepool[test] (default: the python on PATH)
#   --work  where the CPython file, the results and the shim's copy go (default /tmp/cpython_futures)
#   --file  CPython's test_concurrent_futures.py (3.11); without it, Debian's
#           libpython3.11-testsuite package is downloaded with apt-get and the file taken from it
# The CPython file is never copied into this repository.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PY=python3
WORK=/tmp/cpython_futures
FILE=
while [ $# -gt 0 ]; do
    case $1 in
        --venv) PY=$2/bin/python; shift 2 ;;
        --work) WORK=$2; shift 2 ;;
        --file) FILE=$2; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
mkdir -p "$WORK/results"
if [ -z "$FILE" ]; then
    (cd "$WORK" && apt-get download libpython3.11-testsuite >/dev/null && dpkg-deb -x libpython3.11-testsuite_*.deb deb)
    FILE=$(find "$WORK/deb" -name test_concurrent_futures.py | head -1)
fi
cp "$FILE" "$WORK/test_concurrent_futures.py"
cp "$HERE/test_pp_cf.py" "$WORK/"
cd "$WORK"
# -p no:logging: pytest's log capture would fail two FutureTests that assert on stderr
nice "$PY" -m pytest -p no:cacheprovider -p no:logging -rA -q --timeout 120 \
    --junitxml="$WORK/results/results.xml" test_pp_cf.py > "$WORK/results/pytest.txt" 2>&1 || true
tail -1 "$WORK/results/pytest.txt"
"$PY" "$HERE/classify.py" "$WORK/results/results.xml" | tee "$WORK/results/classified.txt"
