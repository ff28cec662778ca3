# Who keeps a runnable thread off its CPU, from a scheduler trace.
#
#   perf record -e sched:sched_switch -e sched:sched_wakeup -a -o sched.data -- sleep 4
#   perf script -i sched.data -F tid,cpu,time,event,trace | awk -v pt=<tid> -f scripts/sched-waits.awk
#
# For every stretch in which thread `pt` is runnable (woken, or preempted) but not running,
# the time is charged to whatever runs on the CPU it waits for. Prints the total wait, the
# number and longest of waits over 1 ms, and per command the time charged and its longest
# single stretch.
{
  t = $3; sub(":", "", t); t = t + 0
  cpu = $2; gsub(/[\[\]]/, "", cpu); c = cpu + 0
}
/sched_wakeup/ && index($0, "pid=" pt " ") {
  waiting = 1; since = t
  target = $0; sub(/.*target_cpu=0*/, "", target); wcpu = target + 0
}
/sched_switch/ {
  next_comm = $0; sub(/.*next_comm=/, "", next_comm); sub(/ next_pid=.*/, "", next_comm)
  if (waiting && c == wcpu && start[c] > 0) {
    s = (start[c] > since ? start[c] : since)
    if (t > s) {
      charged[runner[c]] += t - s
      if (t - s > longest[runner[c]]) longest[runner[c]] = t - s
    }
  }
  runner[c] = next_comm; start[c] = t
  if (index($0, "prev_pid=" pt " ") && index($0, "prev_state=R")) { waiting = 1; since = t; wcpu = c }
  if (index($0, "next_pid=" pt " ")) {
    if (waiting) { d = t - since; total += d; if (d > 0.001) over++; if (d > max) max = d }
    waiting = 0
  }
}
END {
  printf "runnable but waiting %.1f ms in all, %d waits over 1 ms, longest %.2f ms\n", total * 1000, over, max * 1000
  for (k in charged) if (charged[k] > 0.0005)
    printf "  %-20s %8.1f ms (longest %.2f ms)\n", k, charged[k] * 1000, longest[k] * 1000
}
