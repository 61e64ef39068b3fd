"""Run folders read back and compared: tables, the recommendation, the CI gate.

runs (a run folder as data), table (text tables), report (comparison and release
tables, plots), gate (regression gate) and gate_power (what the gate catches).
"""
