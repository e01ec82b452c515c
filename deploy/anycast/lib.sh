# Shared by deploy/anycast/test.sh and netns-test.sh (sourced, not run).

# until_ok DESCRIPTION SECONDS COMMAND...: polls COMMAND every 0.1 s for at most SECONDS;
# on timeout prints DESCRIPTION and the logs in $work, and exits.
until_ok() {
  local what=$1 seconds=$2; shift 2
  local tries=$((seconds * 10))
  while ! "$@" >/dev/null 2>&1; do
    tries=$((tries - 1))
    if [ "$tries" -le 0 ]; then
      echo "$(basename "$0"): timed out waiting for: $what" >&2
      tail -n 20 "$work"/*.log >&2 2>/dev/null || true
      exit 1
    fi
    sleep 0.1
  done
}
