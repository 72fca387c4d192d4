#!/usr/bin/env bash
# main.sh - the main job on the built-in data (Fashion-MNIST, fmnist-open protocol): `simile
# compare` trains cnn-s with softmax cross-entropy, multi-similarity, triplet and contrastive
# losses on the seen classes 0-4, evaluates every model on the unseen classes 5-9 and on the seen
# ones, repeats with 20 images a class, prints the table and writes OUT/report.html (the
# report), OUT/report.json (every figure), OUT/report.txt and the models.  docs/report.md
# explains it.  Run `scripts/main.sh -h` for the options.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SIMILE=${SIMILE:-$ROOT/build/simile}

usage() {
    cat <<EOF
usage: scripts/main.sh [--quick] [--threads N] [--out DIR] [--dry-run] [simile compare options]

Runs the main job: $SIMILE compare ... --out DIR.
  --quick        the short version (1 epoch, 600 train and 300 test images a class, smaller
                 galleries): 1 to 2 minutes on 2 cores; the full run takes about 10 minutes
                 on 2 idle cores (an hour when other jobs share them)
  --threads N    compute threads (default: all cores)
  --out DIR      output folder, relative to the current directory (default: results)
  --dry-run      print the simile compare command and exit
  -h, --help     this help
Any other option goes to simile compare unchanged (see build/simile compare --help), e.g.
  scripts/main.sh --quick --threads 1 --losses softmax,triplet --seed 2
SIMILE=path overrides the simile binary (default: build/simile of this checkout).
Exit status: that of simile compare (0 success, 2 usage error, 3 bad input, ...); 2 for a bad
option of this script.
EOF
}

die_usage() { echo "main.sh: $1 (see scripts/main.sh --help)" >&2; exit 2; }

OUT=results
DRY=0
ARGS=()
while [ $# -gt 0 ]; do
    case $1 in
    -h | --help) usage; exit 0 ;;
    --dry-run) DRY=1 ;;
    --quick) ARGS+=(--quick) ;;
    --threads | --out)
        [ $# -ge 2 ] && [ -n "$2" ] && [ "${2#--}" = "$2" ] || die_usage "$1 needs a value"
        if [ "$1" = --out ]; then OUT=$2; else ARGS+=(--threads "$2"); fi
        shift ;;
    --threads=*) ARGS+=(--threads "${1#--threads=}") ;;
    --out=*) OUT=${1#--out=} ;;
    --*) # an option of simile compare, with its value if it takes one
        ARGS+=("$1")
        if [ $# -ge 2 ] && [ "${2#-}" = "$2" ]; then ARGS+=("$2"); shift; fi ;;
    -*) die_usage "unknown option '$1'" ;;
    *) die_usage "unexpected argument '$1' (the output folder is --out DIR)" ;;
    esac
    shift
done
[ -n "$OUT" ] || die_usage "--out needs a value"
case $OUT in --*) die_usage "--out needs a value" ;; esac
CMD=("$SIMILE" compare "${ARGS[@]}" --out "$OUT")
if [ "$DRY" = 1 ]; then
    for a in "${CMD[@]}"; do # as a shell would read it back
        if [[ $a =~ ^[A-Za-z0-9_./,:=@+-]+$ ]]; then printf '%s ' "$a"; else printf "'%s' " "${a//\'/\'\\\'\'}"; fi
    done
    echo
    exit 0
fi
[ -x "$SIMILE" ] || { echo "main.sh: $SIMILE not found: build first (scripts/setup.sh, or cmake -S . -B build && cmake --build build)" >&2; exit 1; }
exec "${CMD[@]}"
