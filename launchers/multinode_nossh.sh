#!/usr/bin/env bash
# Multi-node without ssh: run this ON EVERY NODE with its own NODE_RANK.
#   HOSTFILE=launchers/hostfile NODE_RANK=0 MASTER_ADDR=10.0.0.1 launchers/multinode_nossh.sh \
#       --preset base-h100
# The hostfile lists every node with its slot (GPU) count; all nodes must see the same one.
set -euo pipefail
: "${HOSTFILE:?set HOSTFILE (see launchers/hostfile.example)}"
: "${NODE_RANK:?set NODE_RANK (0 .. nodes-1)}"
: "${MASTER_ADDR:?set MASTER_ADDR (address of node 0)}"
exec deepspeed --hostfile "$HOSTFILE" --no_ssh --node_rank "$NODE_RANK" \
    --master_addr "$MASTER_ADDR" --master_port "${MASTER_PORT:-29500}" \
    --module medtrain pretrain "$@"
