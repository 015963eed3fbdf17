#!/usr/bin/env bash
# The multi-host test (issue 14 item 6): deploy/docker-compose.yml's coordinator and three agents,
# each its own container with its own address and volume, run examples/cluster/parent.toml while
#   (a) server-b's container is killed mid-run (a remote server failure), and
#   (b) server-c is cut off the network (`docker network disconnect`, a partition) and put back;
# then the CLI (run inside the coordinator's container) checks that the lost work failed over,
# that the partitioned agent's superseded runs were stopped when it came back (its own history
# says so), and that the report shows all of it. Everything is torn down whatever happens.
#
#   tests/compose/cluster-test.sh                build the image, then test
#   SKIP_BUILD=1 tests/compose/cluster-test.sh   use the switchyard:local image as it is
#
# Needs Docker (a daemon this user may use), docker-compose (v1, Debian's) and jq. It pulls no
# image: tests/compose/build-image.sh builds one FROM scratch. Exit 0 passed, 1 failed, 2 could
# not run (what is missing is printed).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

project=${COMPOSE_PROJECT:-switchyardtest}
network="${project}_switchyard"
coordinator_container="${project}_coordinator_1"
logs_dir="$root/target/compose-logs"
started=$SECONDS

say() { printf '[%4ss] %s\n' "$((SECONDS - started))" "$*" >&2; }
fail() { say "FAILED: $*"; exit 1; }
compose() { docker-compose --ansi never -p "$project" -f "$root/deploy/docker-compose.yml" "$@"; }
# The CLI inside the coordinator's container: addresses there are the cluster's own.
cli() { docker exec -i "$coordinator_container" switchyard "$@"; }

for tool in docker docker-compose jq; do
  command -v "$tool" >/dev/null || { echo "cluster-test: $tool is not installed" >&2; exit 2; }
done
docker info >/dev/null 2>&1 || { echo "cluster-test: cannot use the Docker daemon (docker info failed)" >&2; exit 2; }

cleanup() {
  local code=$?
  if [ "$code" -ne 0 ]; then
    mkdir -p "$logs_dir"
    compose logs --no-color --timestamps >"$logs_dir/cluster.log" 2>&1 || true
    say "containers' logs: $logs_dir/cluster.log"
  fi
  compose down --volumes --remove-orphans --timeout 5 >/dev/null 2>&1 || true
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Polls `$2...` (a command) every half second until it succeeds or `$1` seconds pass.
wait_for() {
  local what=$1 deadline=$((SECONDS + $2))
  shift 2
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || fail "waited too long for $what"
    sleep 0.5
  done
  say "$what"
}

healthy() {
  local service container status
  for service in coordinator server-a server-b server-c; do
    container="${project}_${service}_1"
    status=$(docker inspect -f '{{.State.Health.Status}}' "$container" 2>/dev/null || echo missing)
    [ "$status" = healthy ] || return 1
  done
}

agent_state() { cli agents --json | jq -r --arg name "$1" '.agents[] | select(.name == $name) | .state'; }
agents_are() {
  local pair
  for pair in "$@"; do
    [ "$(agent_state "${pair%%=*}")" = "${pair#*=}" ] || return 1
  done
}

report() { cli report "$execution_id" --json; }
running_on() { report | jq -e --arg agent "$1" '[.children[] | select(.agent == $agent and .status == "running")] | length > 0' >/dev/null; }
running_on_both() { running_on server-b && running_on server-c; }
execution_finished() {
  local status
  status=$(report | jq -r .status)
  case "$status" in succeeded|failed|canceled|ended_unexpectedly|completed) return 0 ;; *) return 1 ;; esac
}

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  say "building the image (tests/compose/build-image.sh)"
  tests/compose/build-image.sh
fi
compose down --volumes --remove-orphans --timeout 5 >/dev/null 2>&1 || true

say "starting a coordinator and three agents"
compose up -d
wait_for "every container healthy" 90 healthy
wait_for "the coordinator sees three agents up" 30 agents_are server-a=up server-b=up server-c=up

say "deploying examples/cluster's job to pool etl"
cli deploy --pool etl /etc/switchyard/examples/cluster/jobs/crunch.toml >&2
execution_id=$(cli run /etc/switchyard/examples/cluster/parent.toml --coordinator 127.0.0.1:7600 --detach)
say "execution $execution_id started"
wait_for "children running on server-b and server-c" 30 running_on_both

# (a) A remote server fails: its container dies at once (SIGKILL), runs and all.
say "(a) killing server-b's container"
compose kill -s SIGKILL server-b >/dev/null
# (b) A partition: server-c keeps running its jobs but nobody can reach it.
partitioned=$(report | jq -c '[.children[] | select(.agent == "server-c" and .status == "running") | .run_id]')
say "(b) disconnecting server-c from the network while it runs $partitioned"
docker network disconnect "$network" "${project}_server-c_1"
wait_for "server-b and server-c declared down" 30 agents_are server-b=down server-c=down

say "reconnecting server-c"
docker network connect --ip 172.30.77.13 "$network" "${project}_server-c_1"
wait_for "server-c up again" 30 agents_are server-c=up
wait_for "the execution finished" 120 execution_finished

final=$(report)
echo "$final" | jq . >"$root/target/compose-report.json" 2>/dev/null || true
status=$(echo "$final" | jq -r .status)
[ "$status" = succeeded ] || fail "the execution ended $status: $(echo "$final" | jq -c .)"

# Every region succeeded, each with a child that succeeded.
echo "$final" | jq -e '[.tasks[] | select(.path | test("^Per region\\[[0-9]+\\]/Crunch$"))] | length == 6 and all(.result == "success")' >/dev/null \
  || fail "not every region succeeded: $(echo "$final" | jq -c '.tasks')"
# (a) Work failed over: each child lost with server-b has a later child of its task that
# succeeded elsewhere.
lost_on_b=$(echo "$final" | jq '[.children[] | select(.agent == "server-b" and .status == "lost")] | length')
[ "$lost_on_b" -gt 0 ] || fail "no child shows lost with server-b: $(echo "$final" | jq -c .children)"
echo "$final" | jq -e '
  [.children[] | select(.agent == "server-b" and .status == "lost") | .task] as $lost
  | [$lost[] as $t | [.children[] | select(.task == $t and .agent != "server-b" and .status == "succeeded")] | length > 0]
  | all' >/dev/null || fail "a child lost with server-b did not succeed on another agent"
say "(a) $lost_on_b child(ren) lost with server-b failed over and succeeded elsewhere"

# (b) The partitioned agent's runs were superseded: the report says so, and server-c's own
# history shows each of them stopped (canceled) once it was back.
count=$(echo "$partitioned" | jq length)
[ "$count" -gt 0 ] || fail "server-c ran nothing when it was cut off"
echo "$final" | jq -e --argjson runs "$partitioned" \
  '[.children[] | select(.agent == "server-c" and (.run_id as $r | $runs | index($r)))] | length == ($runs | length) and all(.status == "superseded")' >/dev/null \
  || fail "the partitioned runs $partitioned are not all superseded: $(echo "$final" | jq -c .children)"
history=$(cli history --agent 172.30.77.13:7601 crunch --json)
for run in $(echo "$partitioned" | jq -r '.[]'); do
  outcome=$(echo "$history" | jq -r --arg run "$run" '[.rows[] | select(.run_id == $run and .step_id == 0)][0].run_status')
  [ "$outcome" = canceled ] || fail "server-c's history shows run $run $outcome, not stopped (canceled)"
done
say "(b) server-c's $count partitioned run(s) show superseded, and server-c stopped them on its return"

# The report as people read it shows the failures too.
text=$(cli report "$execution_id")
for word in lost superseded succeeded; do
  echo "$text" | grep -q "$word" || fail "the text report does not show \"$word\":
$text"
done
agents=$(cli agents --json)
[ "$(echo "$agents" | jq -r '.agents[] | select(.name == "server-b") | .state')" = down ] || fail "server-b does not show down"
say "passed in $((SECONDS - started)) s"
