#!/usr/bin/env bash
# Multi-node without ssh: run this ON EVERY NODE with its own NODE_RANK.
#   HOSTFILE=launchers/hostfile NODE_RANK=0 MASTER_ADDR=10.0.0.1 launchers/multinode_nossh.sh \
#       --preset base-h100 [--set key=value ...] [--resume]
# The arguments are `medtrain pretrain` arguments. The hostfile lists every node with its slot
# (GPU) count (launchers/hostfile.example); all nodes must see the same one.
#
# Environment:
#   HOSTFILE, NODE_RANK (0 .. nodes-1), MASTER_ADDR (address of node 0)   required
#   MASTER_PORT        rendezvous port, the same on every node. Default: derived from the job,
#                      20000 + SLURM_JOB_ID % 12000 under SLURM, else 20000 + (checksum of
#                      MASTER_ADDR and the hostfile) % 12000; below Linux's ephemeral port range.
#                      Set it when two runs share a hostfile and a master.
#   DS_ENV_FILE        name of the environment file (default .deepspeed_env), as for DeepSpeed
#   DEEPSPEED          the deepspeed launcher to run (default: `deepspeed` on PATH)
#   MEDTRAIN_LAUNCH_ID tag inherited by every process of the launch (launchers/forward_signal.sh
#                      finds the ranks by it); default slurm-<job id>, else nossh-<addr>-<port>
#
# The environment file: DeepSpeed's runner reads ~/.deepspeed_env and ./.deepspeed_env only on
# its ssh/pdsh path; with --no_ssh it ignores them (deepspeed/launcher/runner.py: the file is read
# where `multi_node_exec` is true, which --no_ssh makes false). This script exports them itself,
# in DeepSpeed's order and format: ~/$DS_ENV_FILE, then ./$DS_ENV_FILE (later lines win; an
# absolute DS_ENV_FILE is read alone), one KEY=VALUE per line, split at the first `=`, key and
# value stripped of surrounding blanks. Values are taken literally: no `$VAR` expansion, no
# quotes removed, nothing executed. Blank lines and `#` comments are skipped (DeepSpeed's parser
# would fail on them). The file's values override the inherited environment, as on ssh nodes.
set -euo pipefail
: "${HOSTFILE:?set HOSTFILE (see launchers/hostfile.example)}"
: "${NODE_RANK:?set NODE_RANK (0 .. nodes-1)}"
: "${MASTER_ADDR:?set MASTER_ADDR (address of node 0)}"
[ -r "$HOSTFILE" ] || {
    echo "multinode_nossh.sh: HOSTFILE $HOSTFILE is not a readable file" >&2
    exit 2
}

# Export KEY=VALUE lines of one environment file (see the header for the format).
export_env_file() {
    local file=$1 line key value n=0
    while IFS= read -r line || [ -n "$line" ]; do
        n=$((n + 1))
        [[ "$line" =~ ^[[:space:]]*(#|$) ]] && continue
        if [[ "$line" != *=* ]]; then
            echo "multinode_nossh.sh: $file:$n: expected KEY=VALUE, got: $line" >&2
            exit 2
        fi
        key=${line%%=*}
        value=${line#*=}
        key=${key#"${key%%[![:space:]]*}"}
        key=${key%"${key##*[![:space:]]}"}
        value=${value#"${value%%[![:space:]]*}"}
        value=${value%"${value##*[![:space:]]}"}
        if [[ ! "$key" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
            echo "multinode_nossh.sh: $file:$n: not a variable name: $key" >&2
            exit 2
        fi
        export "$key=$value"
    done <"$file"
    echo "multinode_nossh.sh: exported the environment in $file" >&2
}

name=${DS_ENV_FILE:-.deepspeed_env}
if [[ "$name" = /* ]]; then
    env_files=("$name")
else
    env_files=("$HOME/$name" "$PWD/$name")
fi
for f in "${env_files[@]}"; do
    if [ -f "$f" ]; then export_env_file "$f"; fi
done

if [ -z "${MASTER_PORT:-}" ]; then
    if [ -n "${SLURM_JOB_ID:-}" ]; then
        job=$SLURM_JOB_ID
    else
        job=$( { echo "$MASTER_ADDR"; cat "$HOSTFILE"; } | cksum | cut -d' ' -f1)
    fi
    MASTER_PORT=$((20000 + 10#$job % 12000))
fi
export MASTER_PORT
export MEDTRAIN_LAUNCH_ID=${MEDTRAIN_LAUNCH_ID:-${SLURM_JOB_ID:+slurm-$SLURM_JOB_ID}}
export MEDTRAIN_LAUNCH_ID=${MEDTRAIN_LAUNCH_ID:-nossh-$MASTER_ADDR-$MASTER_PORT}
echo "multinode_nossh.sh: node $NODE_RANK of $HOSTFILE, master $MASTER_ADDR:$MASTER_PORT," \
    "launch id $MEDTRAIN_LAUNCH_ID" >&2

exec "${DEEPSPEED:-deepspeed}" --hostfile "$HOSTFILE" --no_ssh --node_rank "$NODE_RANK" \
    --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" \
    --module medtrain pretrain "$@"
