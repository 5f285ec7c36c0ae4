"""Sort run.sh's results into buckets: python3 classify.py results.xml

A failure no rule matches is UNCLASSIFIED: a new behaviour needs a new rule (or a fix)."""
import sys, re, collections
import xml.etree.ElementTree as ET

# (regex on "Class.test", bucket, reason); first match wins. Classes are ProcessPool{Fork,Forkserver,Spawn}*.
RULES = [
    (r"ShutdownTest\.test_(context_manager_shutdown|del_shutdown|processes_terminate|shutdown_no_wait)$", "n/a",
     "reads _processes / _executor_manager_thread / _call_queue (the public parts: results after del/shutdown(wait=False) are tested in tests/executor/test_futures_stdlib.py)"),
    (r"ExecutorTest\.test_(saturation|idle_process_reuse_one|idle_process_reuse_multiple|max_tasks_per_child)$", "n/a",
     "counts executor._processes"),
    (r"ExecutorTest\.test_killed_child$", "documented",
     "kills a worker found through _processes (n/a), then expects later submits to raise BrokenProcessPool: README 'a worker that dies ... later submissions run on fresh workers'"),
    (r"DeadlockTest\.test_shutdown_deadlock_pickle$", "n/a", "reads executor._executor_manager_thread"),
    (r"ShutdownTest\.test_cancel_futures$", "documented",
     "wants >20 of 50 queued calls cancelled by shutdown(cancel_futures=True): README 'tasks submitted while the workers are busy are sent together, so more of them are no longer cancellable'"),
    (r"ExecutorTest\.test_traceback$", "documented",
     "__cause__ is picklepool.errors.RemoteTraceback, not concurrent.futures.process._RemoteTraceback: README 'a task's exception keeps its own __cause__'"),
    (r"FailingInitializerTest\.test_initializer$", "documented",
     "BrokenProcessPool as the stdlib's, but nothing is logged on the concurrent.futures logger in the worker: README (errors bullet)"),
    (r"DeadlockTest\.test_exit_during_func_exec_on_worker$", "documented",
     "TaskSystemExitError, not SystemExit: README 'A task's sys.exit(n) fails its future with TaskSystemExitError'"),
    (r"DeadlockTest\.test_exit_during_result_pickle_on_worker$", "documented",
     "picklepool.PicklingError ('the result could not be sent back'), not SystemExit: README 'an argument or result that cannot be pickled fails its future with picklepool.PicklingError' + the sys.exit bullet"),
    (r"DeadlockTest\.test_(error|exit)_at_task_unpickle$", "documented",
     "picklepool.UnpicklingError naming the task, not BrokenProcessPool (the pool is not broken): README 'an argument that cannot be rebuilt in the worker ... fails ... with one UnpicklingError'"),
    # (the error_ test passes: picklepool's UnpicklingError is a BrokenProcessPool)
    (r"DeadlockTest\.test_(error|exit)_during_result_unpickle_in_result_handler$", "documented",
     "the result's unpickling, in the caller's thread, raises SystemExit, which passes through, not BrokenProcessPool: CHANGES (fortieth session) 'the parent's own ... unpickling of a reply still let such a reducer's exception through on purpose'"),
]

def main(path):
    root = ET.parse(path).getroot()
    buckets = collections.Counter(); lines = []
    for tc in root.iter("testcase"):
        name = f"{tc.get('classname').split('.')[-1]}.{tc.get('name')}"
        bad = tc.find("failure") if tc.find("failure") is not None else tc.find("error")
        if tc.find("skipped") is not None:
            buckets["skip"] += 1; continue
        if bad is None:
            buckets["pass"] += 1; continue
        for rx, bucket, why in RULES:
            if re.search(rx, name):
                break
        else:
            bucket, why = "UNCLASSIFIED", (bad.get("message") or "")[:200]
        buckets[bucket] += 1
        lines.append(f"{bucket:12} {name}  -- {why}")
    print(dict(buckets))
    print("\n".join(sorted(lines)))

main(sys.argv[1])
