#!/usr/bin/env bash
# One node: launchers/local.sh [N] [--] [medtrain pretrain args]
#   launchers/local.sh 8 -- --preset base-h100 --set train.steps=1000
#   launchers/local.sh --preset tiny-cpu            (N omitted: every visible accelerator)
#
# N (optional) is taken only when the first argument is a whole number, so `--preset x` is never
# read as the rank count. Without N: the devices in CUDA_VISIBLE_DEVICES when it is set, else the
# GPUs nvidia-smi lists, else 1 (one CPU rank). With N and CUDA_VISIBLE_DEVICES set, the first N
# visible devices are used (DeepSpeed ignores CUDA_VISIBLE_DEVICES once --num_gpus is given and
# would take GPUs 0..N-1, so the count then goes through CUDA_VISIBLE_DEVICES instead).
#
# Environment:
#   MASTER_PORT        rendezvous port; default: a port that is free now (so two runs on one
#                      machine do not collide on 29500), else one derived from this shell's pid
#   DEEPSPEED          the deepspeed launcher to run (default: `deepspeed` on PATH)
#   MEDTRAIN_LAUNCH_ID tag inherited by every process of the launch (launchers/forward_signal.sh
#                      finds the ranks by it); default local-<host>-<pid>
set -euo pipefail

N=""
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then
    N=$((10#$1))
    shift
    if ((N < 1)); then
        echo "local.sh: the rank count must be >= 1, got $N" >&2
        exit 2
    fi
fi
[ "${1:-}" = "--" ] && shift

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' \
        2>/dev/null || echo $((20000 + $$ % 12000))
}
export MASTER_PORT=${MASTER_PORT:-$(free_port)}
export MEDTRAIN_LAUNCH_ID=${MEDTRAIN_LAUNCH_ID:-local-${HOSTNAME:-$(uname -n)}-$$}

select=()
if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
    # DeepSpeed turns CUDA_VISIBLE_DEVICES into --include=localhost:<ids> when no count is given.
    IFS=, read -r -a visible <<<"$CUDA_VISIBLE_DEVICES"
    if [ -n "$N" ]; then
        if ((N > ${#visible[@]})); then
            echo "local.sh: $N ranks asked, CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES has" \
                "${#visible[@]}" >&2
            exit 2
        fi
        CUDA_VISIBLE_DEVICES=$(
            IFS=,
            echo "${visible[*]:0:N}"
        )
    fi
else
    if [ -z "$N" ]; then
        N=$( (nvidia-smi -L 2>/dev/null || true) | grep -c '^GPU' || true)
        ((N >= 1)) || N=1
    fi
    select=(--num_gpus "$N")
fi

exec "${DEEPSPEED:-deepspeed}" ${select[@]+"${select[@]}"} --master_port "$MASTER_PORT" \
    --module medtrain pretrain "$@"
