#!/bin/bash
# Submit the extraction array and, once every array task succeeded (afterok), the verification.
#   PARTS=8 DATASET=aff-wild2 ROOT=/shared/data/aff-wild2 OUT=/shared/caches/aff-wild2 examples/slurm/submit.sh
# Logs go to ./logs of the directory you submit from (the scripts' --output).
set -euo pipefail
here=$(dirname "$0")
mkdir -p logs
PARTS=${PARTS:-8}
export DATASET=${DATASET:-aff-wild2} ROOT=${ROOT:-/shared/data/$DATASET} OUT=${OUT:-/shared/caches/$DATASET}
array=$(sbatch --parsable --export=ALL --array=0-$((PARTS - 1)) "$here/extract.sbatch")
sbatch --parsable --export=ALL --dependency=afterok:"$array" "$here/verify.sbatch"
echo "extraction array $array ($PARTS parts), verification after it"
