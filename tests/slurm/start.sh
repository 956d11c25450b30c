#!/usr/bin/env bash
# Bring up a single-node SLURM on loopback for tests: munge, MariaDB, slurmdbd (so that sacct works),
# slurmctld and slurmd with fake GPUs as gres. Needs root and the Debian packages slurm-wlm, slurmdbd,
# munge and mariadb-server; no systemd. Idempotent: a daemon already running from this state directory is
# left alone, so a second call with the cluster up changes nothing. Stop it with stop.sh.
# Prints the line to source for client commands: export SLURM_CONF=...
set -euo pipefail
. "$(dirname "$0")/common.sh"

[[ $EUID -eq 0 ]] || die "must run as root (the daemons run as root)"
# The executor plugin's jobstep drops SLURM_CONF before its srun, so client commands inside a job fall back
# to /etc/slurm/slurm.conf and then to /run/slurm/conf/slurm.conf (where a configless slurmd would put its
# config). This cluster links its config there; a machine with a SLURM of its own would shadow it.
[[ ! -e /etc/slurm/slurm.conf ]] ||
    die "/etc/slurm/slurm.conf exists: srun inside jobs would read it instead of this test cluster's config"
if [[ -e /run/slurm/conf && $(readlink /run/slurm/conf) != "$STATE/etc" ]]; then
    die "/run/slurm/conf belongs to another SLURM configuration"
fi
for program in munged mungekey mariadbd mariadb-install-db mariadb slurmdbd slurmctld slurmd sacctmgr sinfo; do
    command -v "$program" >/dev/null ||
        die "$program not found: apt-get install slurm-wlm slurmdbd munge mariadb-server"
done

wait_for() {
    local what=$1 seconds=$2
    shift 2
    for ((i = 0; i < seconds * 5; i++)); do
        if [[ $(type -t "$1") == function ]]; then
            "$@" >/dev/null 2>&1 && return 0
        else
            # A client that cannot reach its daemon may retry for minutes; each probe gets a few seconds.
            timeout 5 "$@" >/dev/null 2>&1 && return 0
        fi
        sleep 0.2
    done
    die "$what did not come up within $seconds s; logs in $STATE/log"
}

all_up=1
for daemon in "${DAEMONS[@]}"; do
    daemon_pid "$daemon" >/dev/null || all_up=0
done
if ((all_up)); then
    say "already up in $STATE"
    echo "export SLURM_CONF=$SLURM_CONF"
    exit 0
fi

mkdir -p "$STATE"/{etc,run,log,munge,db,ctld,slurmd,dev}
if [[ ! -s $STATE/etc/db.pass ]]; then
    (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$STATE/etc/db.pass")
fi

render() {
    sed -e "s|@STATE@|$STATE|g" -e "s|@HOST@|$NODE|g" -e "s|@CTLD_PORT@|$CTLD_PORT|g" \
        -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" -e "s|@DBD_PORT@|$DBD_PORT|g" -e "s|@DB_PORT@|$DB_PORT|g" \
        -e "s|@GPUS@|$GPUS|g" -e "s|@LAST_GPU@|$((GPUS - 1))|g" -e "s|@GPU_TYPE@|$GPU_TYPE|g" \
        -e "s|@DB_PASS@|$(cat "$STATE/etc/db.pass")|g" "$SLURM_TEMPLATES/$1.in" >"$STATE/etc/$1"
}
render slurm.conf
render gres.conf
render slurmdbd.conf
# slurmdbd refuses a config that others can read: it holds the database password.
chmod 600 "$STATE/etc/slurmdbd.conf"
for ((i = 0; i < GPUS; i++)); do
    ln -sfn /dev/null "$STATE/dev/gpu$i"
done

mkdir -p /run/slurm
ln -sfn "$STATE/etc" /run/slurm/conf

if ! daemon_pid munged >/dev/null; then
    [[ -s $STATE/munge/munge.key ]] || mungekey --create --keyfile "$STATE/munge/munge.key"
    # --force: munged refuses to run as root or with its files under a world-writable /tmp otherwise.
    munged --force --key-file "$STATE/munge/munge.key" --socket "$STATE/munge/munge.socket" \
        --pid-file "$(pid_file munged)" --log-file "$STATE/log/munged.log" --seed-file "$STATE/munge/munged.seed"
    wait_for munged 10 daemon_pid munged
fi

db() {
    mariadb --no-defaults --socket="$STATE/db/mariadbd.sock" -u root "$@"
}
if ! daemon_pid mariadbd >/dev/null; then
    if [[ ! -d $STATE/db/data/mysql ]]; then
        mariadb-install-db --no-defaults --datadir="$STATE/db/data" --user=root --skip-test-db \
            --auth-root-authentication-method=socket >"$STATE/log/mariadb-install.log" 2>&1
    fi
    setsid mariadbd --no-defaults --user=root --datadir="$STATE/db/data" --socket="$STATE/db/mariadbd.sock" \
        --bind-address=127.0.0.1 --port="$DB_PORT" --skip-name-resolve --skip-log-bin \
        --innodb-buffer-pool-size=64M --pid-file="$(pid_file mariadbd)" \
        --log-error="$STATE/log/mariadbd.log" </dev/null >/dev/null 2>&1 &
    wait_for MariaDB 60 db -e "SELECT 1"
    wait_for "MariaDB's pid file" 10 daemon_pid mariadbd
fi
db -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$(cat "$STATE/etc/db.pass")';
       GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"

if ! daemon_pid slurmdbd >/dev/null; then
    # slurmdbd reads slurmdbd.conf from the directory of $SLURM_CONF.
    slurmdbd
    wait_for slurmdbd 60 sacctmgr --noheader list cluster
fi
if [[ -z $(sacctmgr --noheader --parsable2 list cluster format=cluster w2s-test) ]]; then
    sacctmgr --immediate add cluster w2s-test >/dev/null
fi

if ! daemon_pid slurmctld >/dev/null; then
    slurmctld -f "$SLURM_CONF"
    wait_for slurmctld 30 scontrol ping
fi
if ! daemon_pid slurmd >/dev/null; then
    slurmd -f "$SLURM_CONF" -N "$NODE"
    wait_for slurmd 30 daemon_pid slurmd
fi
node_idle() {
    [[ $(sinfo --noheader --nodes "$NODE" --format %t) == idle* ]]
}
wait_for "node $NODE" 60 node_idle
say "up in $STATE"
echo "export SLURM_CONF=$SLURM_CONF"
