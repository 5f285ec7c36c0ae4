"""Code that runs inside a worker: the batch runner and its caches."""
