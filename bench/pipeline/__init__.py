"""One run, in order: config -> dataset -> engine -> timed passes -> run folder.

runner (the order), measure (warm-up, cold start, timed passes), clock (the timed region
and its phases), progress (saved as batches finish; resume), results (rows and summary),
profile (profile=true: one warm batch under torch.profiler).
"""
