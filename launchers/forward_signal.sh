#!/usr/bin/env bash
# Send a signal to the training RANK processes of one launch on THIS node:
#   launchers/forward_signal.sh [SIGNAL] [LAUNCH_ID]        (default USR1, $MEDTRAIN_LAUNCH_ID)
# slurm.sbatch runs it on every node (srun --overlap, one task per node) when SLURM's
# pre-timeout USR1 reaches the batch shell; it also works by hand on any node of a launch started
# by local.sh or multinode_nossh.sh.
#
# Which processes are ranks: the direct children of DeepSpeed's per-node launcher
# (`python -u -m deepspeed.launcher.launch ...`, started by the `deepspeed` runner), whose
# environment holds MEDTRAIN_LAUNCH_ID=LAUNCH_ID (the launchers export it; every process of the
# launch inherits it). launch.py spawns exactly one child per rank (`python -u -m medtrain
# --local_rank=N pretrain ...`; numactl execs into it). Never signalled: the runner and launch.py
# themselves (neither handles USR1: the default action would kill them and orphan the ranks), the
# ranks' own children (data loader workers, compile workers: a killed worker fails the rank), and
# other jobs' or users' launches on a shared node (another launch id, or /proc/PID/environ not
# readable). Only /proc is used: no pgrep/psutil needed on the compute node.
#
# Prints one line per signalled rank; exits 0 when at least one rank was signalled, 1 when none
# was found (e.g. the ranks have not started yet, or have already exited).
set -uo pipefail
SIGNAL=${1:-USR1}
SIGNAL=${SIGNAL#SIG}
LAUNCH_ID=${2:-${MEDTRAIN_LAUNCH_ID:-}}
if [ -z "$LAUNCH_ID" ]; then
    echo "forward_signal.sh: give a LAUNCH_ID or set MEDTRAIN_LAUNCH_ID" >&2
    exit 2
fi
host=${HOSTNAME:-$(uname -n)}

# The NUL-separated file $1 has the element $2 (exact match).
has_element() {
    local item
    while IFS= read -r -d '' item; do
        [ "$item" = "$2" ] && return 0
    done <"$1" 2>/dev/null
    return 1
}

launchers=()
for dir in /proc/[0-9]*; do
    has_element "$dir/cmdline" deepspeed.launcher.launch || continue
    has_element "$dir/environ" "MEDTRAIN_LAUNCH_ID=$LAUNCH_ID" || continue
    launchers+=("${dir#/proc/}")
done

sent=0
if ((${#launchers[@]})); then
    for dir in /proc/[0-9]*; do
        stat=$(cat "$dir/stat" 2>/dev/null) || continue
        fields=${stat##*) } # after the command name, which may hold spaces and parentheses
        read -r _state ppid _ <<<"$fields"
        for parent in "${launchers[@]}"; do
            if [ "$ppid" = "$parent" ]; then
                pid=${dir#/proc/}
                if kill -s "$SIGNAL" "$pid" 2>/dev/null; then
                    echo "forward_signal.sh: $host: SIG$SIGNAL -> rank pid $pid (launcher $parent)"
                    sent=$((sent + 1))
                fi
            fi
        done
    done
fi
if ((sent == 0)); then
    echo "forward_signal.sh: $host: no rank process of launch $LAUNCH_ID found" >&2
    exit 1
fi
