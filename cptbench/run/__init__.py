"""The run engine: a request becomes planned jobs, jobs are claimed, executed and recorded.

One file per step, data flowing one way (see each module's docstring):
plan -> session (data, manifests, fingerprints, checks) -> context (what a method is given) ->
device (the numerics policy) -> claim (skip, lock, busy) -> execute (fit, predict, score) ->
record (the typed RunRecord). :mod:`.engine` strings them together for one process, torchrun or Ray.
"""
