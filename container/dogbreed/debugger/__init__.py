"""SageMaker Debugger in the container: the smdebug hook, the profiler, the built-in rules evaluated
on the job's own tensors, and the HTML report."""
