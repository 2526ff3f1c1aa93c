"""The executor: turns a config into batches and runs a batch as a chain of stages.

It knows the Stage base and the method registry, never a method by name (datatrove's
executors, in spirit). `flows/` runs its batches as Prefect tasks; `bench/` calls it directly.
"""
