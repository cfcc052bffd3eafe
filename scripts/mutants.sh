#!/usr/bin/env bash
# Mutation testing of the reference's decision points (the file list in .cargo/mutants.toml):
# `scripts/mutants.sh <day>` runs that night's shard (day 1..7: shard day-1 of 7, so the whole
# list is covered once a week), `scripts/mutants.sh all` the whole list. cargo-mutants writes
# mutants.out/ (outcomes.json, caught.txt, missed.txt, timeout.txt, unviable.txt); this script
# adds mutants.out/report.md: caught / missed / unviable / timeout per file, the missed mutants
# listed. Needs the services the tests use (scripts/services.sh). Exit status: cargo-mutants'
# (0 every mutant caught, 2 some missed, 3 some timed out, 4 the unmutated tests failed).
set -euo pipefail
cd "$(dirname "$0")/.."

day=${1:?usage: scripts/mutants.sh <day 1..7 | all>}
command -v cargo-mutants >/dev/null || cargo install --locked cargo-mutants
args=(mutants --no-shuffle --timeout-multiplier 3 --copy-target true)
case "$day" in
  all) ;;
  [1-7]) args+=(--shard "$((day - 1))/7") ;;
  *) echo "mutants: day must be 1..7 or all, not '$day'" >&2; exit 2 ;;
esac
status=0
cargo "${args[@]}" || status=$?

out=mutants.out
count() { # file outcome
  [ -f "$out/$2.txt" ] || { echo 0; return; }
  grep -c "^$1:" "$out/$2.txt" || true
}
{
  echo "# Mutation testing: $( [ "$day" = all ] && echo "every mutant" || echo "shard $((day - 1))/7 (day $day)")"
  echo
  echo "| file | caught | missed | unviable | timeout |"
  echo "|---|---:|---:|---:|---:|"
  total_caught=0; total_missed=0
  for f in $(cat "$out"/{caught,missed,unviable,timeout}.txt 2>/dev/null | cut -d: -f1 | sort -u); do
    c=$(count "$f" caught); m=$(count "$f" missed); u=$(count "$f" unviable); t=$(count "$f" timeout)
    total_caught=$((total_caught + c)); total_missed=$((total_missed + m))
    echo "| \`$f\` | $c | $m | $u | $t |"
  done
  viable=$((total_caught + total_missed))
  echo
  if [ "$viable" -gt 0 ]; then
    echo "Caught $total_caught of $viable viable mutants ($((100 * total_caught / viable)) %)."
  fi
  if [ -s "$out/missed.txt" ]; then
    echo
    echo "## Missed"
    echo
    sed 's/^/- /' "$out/missed.txt"
  fi
} > "$out/report.md"
cat "$out/report.md"
exit "$status"
