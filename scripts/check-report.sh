#!/usr/bin/env bash
# check-report.sh - renders an oodc report (report/index.html, written by
# `oodc run` or `oodc eval`) in headless Chromium and checks that the page
# really renders: the DOM Chromium builds has both tables, one section per
# OOD set with its ROC and PR charts and histograms as <svg> elements, and
# no script; and it writes a full-page screenshot to look at.
#
# Usage: scripts/check-report.sh [REPORT_DIR] [SCREENSHOT.png]
#          REPORT_DIR defaults to report, the screenshot to REPORT_DIR/screenshot.png
#        scripts/check-report.sh --install   installs Chromium first
#
# Chromium is not among the packages scripts/deps.sh installs: it is large
# (about 300 MB installed). Install it once with
#   apt-get install --no-install-recommends chromium
# or pass --install. Exit status: 0 the page renders as expected, 1 a check
# failed (the reason is printed), 2 usage error or Chromium missing.
set -euo pipefail

if [ "${1:-}" = "--install" ]; then
  shift
  if ! command -v chromium >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
    echo "check-report: installing chromium (about 300 MB)"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium
  fi
fi

dir="${1:-report}"
shot="${2:-$dir/screenshot.png}"
page="$dir/index.html"
[ -f "$page" ] || { echo "check-report: no $page (run oodc run or oodc eval first)" >&2; exit 2; }
browser="$(command -v chromium || command -v chromium-browser || true)"
[ -n "$browser" ] || {
  echo "check-report: Chromium is not installed: apt-get install --no-install-recommends chromium (or pass --install)" >&2
  exit 2
}

url="file://$(cd "$(dirname "$page")" && pwd)/$(basename "$page")"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# --no-sandbox: Chromium refuses to run as root otherwise (CI runs as root);
# the page is a local file with no scripts.
flags=(--headless=new --no-sandbox --disable-gpu --hide-scrollbars --no-first-run
       --user-data-dir="$tmp/profile" --virtual-time-budget=2000)

"$browser" "${flags[@]}" --dump-dom "$url" > "$tmp/dom.html" 2> "$tmp/chromium.log" || {
  echo "check-report: chromium failed to load $url:" >&2
  tail -5 "$tmp/chromium.log" >&2
  exit 1
}

fail=0
check() { # description, command...
  local what="$1"; shift
  if "$@"; then echo "ok   $what"; else echo "FAIL $what"; fail=1; fi
}
dom="$tmp/dom.html"
nsec=$(grep -o '<section id="ood-[^"]*"' "$dom" | wc -l)
check "page has a title and both tables" \
  grep -q 'Table 1' "$dom"
check "Table 2 present" grep -q 'Table 2' "$dom"
check "at least one OOD set section ($nsec)" test "$nsec" -ge 1
# every section has at least 2 charts (ROC, PR) and one histogram
awk 'BEGIN{RS="<section "} NR>1 { n=gsub(/<svg/,"&"); if (n < 3) { bad=1; print "section with " n " svg: " substr($0,1,60) > "/dev/stderr" } } END{exit bad}' "$dom" \
  && echo "ok   every OOD section has ROC, PR and histogram <svg>s" \
  || { echo "FAIL an OOD section lacks its charts"; fail=1; }
check "curves drawn (polyline elements)" grep -q '<polyline' "$dom"
check "no scripts" bash -c "! grep -qi '<script' '$dom'"

# A window as tall as the page: table rows, then per OOD set a row of charts
# and rows of five histograms (the layout of report.c at 1400 px wide).
ntr=$(grep -o '<tr' "$dom" | wc -l)
hrows=$(awk 'BEGIN{RS="<section "} NR>1 { n=gsub(/class="hist"/,"&"); r += int((n + 4) / 5) } END{print r + 0}' "$dom")
height=$(( 500 + 26 * ntr + 520 * nsec + 190 * hrows ))
"$browser" "${flags[@]}" --window-size=1400,"$height" --screenshot="$shot" "$url" \
  > /dev/null 2>> "$tmp/chromium.log" || { echo "check-report: screenshot failed" >&2; exit 1; }
check "screenshot written ($shot)" test -s "$shot"
# a PNG that is not blank: more than a few distinct byte values in its data
check "screenshot is a PNG" bash -c "head -c 8 '$shot' | od -An -tx1 | grep -q '89 50 4e 47'"

if [ "$fail" -ne 0 ]; then
  echo "check-report: $page does not render as expected" >&2
  exit 1
fi
echo "check-report: $page renders: $nsec OOD set section(s); screenshot $shot"
