# Shared helpers for linkgate's scripts. Source it; do not run it.

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Runs a command as root: directly when we are root, through sudo otherwise.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "need root (or sudo) to run: $*"
  fi
}

APT_UPDATED=0
# Installs Debian packages that are missing; runs apt-get update at most once.
apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install $* by hand"
  if [ "$APT_UPDATED" -eq 0 ]; then
    log "apt-get update"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    APT_UPDATED=1
  fi
  log "installing $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Ensures a command exists, installing the named package when it does not.
need() {
  local cmd=$1 pkg=${2:-$1}
  command -v "$cmd" >/dev/null 2>&1 || apt_install "$pkg"
  command -v "$cmd" >/dev/null 2>&1 || die "$cmd is still missing after installing $pkg"
}

# Waits until a command succeeds, up to N seconds.
wait_for() {
  local seconds=$1; shift
  local i
  for ((i = 0; i < seconds * 4; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.25
  done
  return 1
}

# Waits (up to 5 min) until the proxy whose metrics listen on 127.0.0.1:PORT has no click in
# flight: clicks deferred while the cores were busy are processed after a load. A server
# without metrics there (the bare baseline, or no PORT) has nothing to wait for.
caught_up() { # PORT
  local i f
  for ((i = 0; i < 300; i++)); do
    f=$(curl -s "http://127.0.0.1:${1:-0}/metrics" 2>/dev/null |
      awk '$1 == "linkgate_clicks_in_flight" { print $2 }') || true
    if [ -z "$f" ] || [ "$f" = 0 ]; then return 0; fi
    sleep 1
  done
}

# Each thread of a process as "tid name" and its /proc stat fields after the name, so that
# field N of proc(5) is $N here (minflt $10, utime $14, stime $15): the name may hold
# spaces, so stat is cut after its last ") ". Spaces in names become underscores.
task_stats() {
  local t
  for t in /proc/"$1"/task/*; do
    echo "${t##*/} $(tr ' ' _ < "$t/comm") $(sed 's/.*) //' "$t/stat")"
  done 2>/dev/null
}

# CPU ticks of a process's threads, summed by thread name: "name ticks" lines, sorted (for
# `join`).
cpu_of() {
  task_stats "$1" | awk '{a[$2] += $14 + $15} END {for (k in a) print k, a[k]}' | sort
}

# CPU µs per request by thread group between two `cpu_of` snapshots, and their total:
#   cpu_per_request BEFORE-FILE AFTER-FILE REQUESTS
cpu_per_request() {
  join -a1 "$2" "$1" | awk -v hz="$(getconf CLK_TCK)" -v n="$3" \
    '{d = ($2 - $3) * 1e6 / hz / n; t += d; if (d > 0.005) printf "%-26s %6.2f\n", $1, d}
     END {printf "%-26s %6.2f\n", "total", t}'
}
