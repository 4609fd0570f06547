# Sourced by scripts/demo and scripts/test: creates or reuses .venv and installs the
# project into it (with the extras named in $EXTRAS). Re-installs only when pyproject.toml
# changed since the last install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "error: Python 3.11 or newer is needed (found: $($PYTHON --version 2>&1))" >&2
  exit 1
fi
# WeasyPrint renders PDFs through Pango; reports are set in Liberation Serif. Install
# what is missing from Debian when we are root; otherwise say what to install.
MISSING=()
LDCONFIG="$(command -v ldconfig || echo /sbin/ldconfig)"
# (each listing is read whole before grep looks at it: with pipefail, `grep -q` closing
# the pipe early made the check fail now and then, and apt-get ran for nothing)
LIBS="$("$LDCONFIG" -p 2>/dev/null || true)"
grep -q libpango-1.0 <<<"$LIBS" || MISSING+=(libpango-1.0-0 libpangoft2-1.0-0)
FONTS="$(fc-list 2>/dev/null || true)"
grep -qi "Liberation Serif" <<<"$FONTS" || MISSING+=(fonts-liberation)
if [ ${#MISSING[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing ${MISSING[*]} for PDF reports (apt-get)..." >&2
    (apt-get update -qq && apt-get install -y -qq "${MISSING[@]}") >/dev/null 2>&1 \
      || echo "warning: apt-get install ${MISSING[*]} failed; PDF reports may fall back" >&2
  else
    echo "warning: PDF reports need: apt-get install ${MISSING[*]}" >&2
  fi
fi
# The portal's browser tests drive Debian's Chromium (Playwright never downloads one):
# with the dev extras, install it when we are root; otherwise those tests skip, saying why.
if [[ ",${EXTRAS:-}," == *",dev,"* ]] && ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing chromium for the portal's browser tests (apt-get)..." >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
      >/dev/null 2>&1 \
      || echo "warning: apt-get install chromium failed; the browser tests will skip" >&2
  else
    echo "warning: the portal's browser tests need: apt-get install chromium" >&2
  fi
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
STAMP=".venv/.installed-${EXTRAS:-base}"
WANT="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "installing the auditor into .venv (log: .venv/install.log) ..." >&2
  TARGET="."
  [ -n "${EXTRAS:-}" ] && TARGET=".[${EXTRAS}]"
  if ! { .venv/bin/python -m pip install --upgrade pip \
         && .venv/bin/python -m pip install -e "$TARGET"; } > .venv/install.log 2>&1; then
    tail -n 30 .venv/install.log >&2
    echo "error: installing the auditor failed; the full log is .venv/install.log" >&2
    exit 1
  fi
  echo "$WANT" > "$STAMP"
fi
export PATH="$ROOT/.venv/bin:$PATH"
