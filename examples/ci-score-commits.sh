#!/bin/sh
# Score every commit a branch adds over its base with a sweeper model, in CI; the job fails when one is too risky.
#
#   SWEEPER_MODEL=models:/jitdp/3 MLFLOW_TRACKING_URI=https://mlflow.example.org \
#       examples/ci-score-commits.sh origin/main          # the commits of HEAD that origin/main lacks
#
# The change metrics count the whole history: check out all of it (GitHub Actions: actions/checkout with
# fetch-depth: 0; GitLab: GIT_DEPTH: 0). Keep $SWEEPER_CACHE (default ~/.cache/sweeper) between jobs and only
# commits new since the last job are read. Settings (environment):
#   SWEEPER_MODEL        a trial's run id or models:/NAME/VERSION (required)
#   SWEEPER_FAIL_ABOVE   fail when a commit's defect probability is above this (default 0.9)
#   SWEEPER_JSON         also write the scores as JSON to this file (commit, probability, decision, features)
#   SWEEPER              the sweeper command (default: sweeper)
# Exit status: 0 all commits at or below the limit, 1 one is above it, 2 scoring failed (the message says why).
set -u
base=${1:?usage: ci-score-commits.sh BASE [HEAD], e.g. origin/main}
head=${2:-HEAD}
model=${SWEEPER_MODEL:?set SWEEPER_MODEL to a run id or models:/NAME/VERSION}
limit=${SWEEPER_FAIL_ABOVE:-0.9}
sweeper=${SWEEPER:-sweeper}

if [ -n "${SWEEPER_JSON:-}" ]; then
    $sweeper predict "$model" --repo . "$base..$head" --fail-above "$limit" --json > "$SWEEPER_JSON"
else
    $sweeper predict "$model" --repo . "$base..$head" --fail-above "$limit"
fi
status=$?
case $status in
    0) echo "sweeper: no commit of $base..$head above $limit" ;;
    1) echo "sweeper: commits of $base..$head above $limit (see above): failing the job" >&2 ;;
    *) echo "sweeper: scoring failed (exit status $status)" >&2 ;;
esac
exit $status
