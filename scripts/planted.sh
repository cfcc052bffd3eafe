#!/usr/bin/env bash
# Planted bugs: each scenarios/planted/<name>.patch is a small, realistic bug in the reference
# of the kind one of the suites' interleavings exists to find, with the command that should
# catch it (its `judge:` line). `scripts/planted.sh [name...]` (default: every patch) builds
# the committed reference with the bug in a scratch worktree, runs the judge against that
# binary (REFERENCE_BIN), and reports caught (the judge failed) or MISSED (it passed).
# Logs: target/planted/<name>.log. Exit status 1 when a bug was missed. Needs the services
# the tests use (scripts/services.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$root/target/planted
regressions=$root/scenarios/tests/proptest-regressions
mkdir -p "$work"
git worktree prune

names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  for p in scenarios/planted/*.patch; do names+=("$(basename "$p" .patch)"); done
fi

missed=0
for name in "${names[@]}"; do
  patch=$root/scenarios/planted/$name.patch
  [ -f "$patch" ] || { echo "planted: no bug '$name' (scenarios/planted/*.patch)" >&2; exit 2; }
  judge=$(sed -n 's/^judge: //p' "$patch")
  src=$work/src-$name
  git worktree remove --force "$src" 2>/dev/null || rm -rf "$src"
  git worktree add -q --detach "$src" HEAD
  git -C "$src" apply "$patch"
  echo "planted $name: building the reference with the bug"
  # One target directory for every bug: only the reference is rebuilt between them.
  CARGO_TARGET_DIR=$work/target cargo build -q --manifest-path "$src/Cargo.toml" -p reference --bin reference
  git worktree remove --force "$src"
  echo "planted $name: $judge"
  start=$(date +%s)
  status=0
  # A property failing against a planted bug is no regression of the reference: keep proptest
  # from saving it into the tree.
  rm -rf "$work/regressions" && cp -a "$regressions" "$work/regressions"
  REFERENCE_BIN=$work/target/debug/reference bash -c "$judge" >"$work/$name.log" 2>&1 || status=$?
  rm -rf "$regressions" && cp -a "$work/regressions" "$regressions"
  took="$(( $(date +%s) - start )) s, $work/$name.log"
  # The catch is a failed property or an experiment not as predicted; any other failure (a
  # build error, a service missing) is the judge failing to run, which proves nothing.
  verdicts='property failed|NOT AS PREDICTED'
  if [ "$status" = 0 ]; then
    echo "planted $name: MISSED ($took)"; missed=1
  elif grep -qE "$verdicts" "$work/$name.log"; then
    echo "planted $name: caught ($took)"
    grep -E "$verdicts" "$work/$name.log" | head -3 | cut -c1-300
  else
    echo "planted $name: the judge could not run (exit $status; $took)"; missed=1
  fi
done
exit "$missed"
