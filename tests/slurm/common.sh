# Sourced by start.sh and stop.sh: where the test cluster keeps its state, and how to tell its daemons.
# W2S_SLURM_DIR   state: rendered configs, pid files, spool, logs, the database (default /tmp/w2s-slurm)
# W2S_SLURM_PORT  first of four loopback ports: slurmctld, slurmd, slurmdbd, MariaDB (default 16817)
# W2S_SLURM_GPUS  number of fake GPUs on the node (default 4)

SLURM_TEMPLATES=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE=${W2S_SLURM_DIR:-/tmp/w2s-slurm}
CTLD_PORT=${W2S_SLURM_PORT:-16817}
SLURMD_PORT=$((CTLD_PORT + 1))
DBD_PORT=$((CTLD_PORT + 2))
DB_PORT=$((CTLD_PORT + 3))
GPUS=${W2S_SLURM_GPUS:-4}
GPU_TYPE=fakegpu
NODE=$(hostname -s)
export SLURM_CONF=$STATE/etc/slurm.conf

# Start order; stop.sh goes backwards.
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)

pid_file() {
    echo "$STATE/run/$1.pid"
}

# The pid of a daemon this cluster started, if it is still that program; a stale pid file whose pid was
# reused by another process must never lead to signalling that process.
daemon_pid() {
    local pid exe
    pid=$(cat "$(pid_file "$1")" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
    # Debian installs slurmd and slurmctld as alternatives: compare with the resolved program.
    [[ ${exe% (deleted)} == "$(readlink -f "$(command -v "$1")")" ]] || return 1
    echo "$pid"
}

say() {
    echo "w2s-slurm: $*" >&2
}

die() {
    say "$*"
    exit 1
}
