#!/bin/bash
# usage: pin_run.sh MODE OUT  -- MODE: none | vw1 (valkey+worker on cpu1, rest cpu0) | srv1 (valkey+worker+gateway cpu1, loadgens cpu0)
MODE=$1; OUT=$2
cd /work/main
if [ "$MODE" = none ]; then
  timeout 600 .venv/bin/python docs/perf/measure_gifts.py gifts --rate 1800 --json $OUT > $OUT.log 2>&1
  exit
fi
taskset -c 0 timeout 600 .venv/bin/python docs/perf/measure_gifts.py gifts --rate 1800 --json $OUT > $OUT.log 2>&1 &
H=$!
for i in $(seq 1 600); do
  for p in $(pgrep -f "valkey-server" ) $(pgrep -f "server.cli worker") $(pgrep -f "echo_server"); do
    taskset -a -p -c 1 $p > /dev/null 2>&1
  done
  if [ "$MODE" = srv1 ]; then
    for p in $(pgrep -f "server.cli serve") $(pgrep -f "server.cli jobs"); do taskset -a -p -c 1 $p >/dev/null 2>&1; done
  fi
  kill -0 $H 2>/dev/null || break
  sleep 0.2
done
wait $H
