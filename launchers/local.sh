#!/usr/bin/env bash
# One node, all local accelerators (or N CPU processes): launchers/local.sh [N] -- [medtrain args]
#   launchers/local.sh 8 --preset base-h100 --set train.steps=1000
set -euo pipefail
N=${1:-$(nvidia-smi -L 2>/dev/null | wc -l)}
shift || true
[ "${1:-}" = "--" ] && shift
exec deepspeed --num_gpus "${N:-1}" --module medtrain pretrain "$@"
