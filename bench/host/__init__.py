"""The machine a run is on: its fingerprint (environment) and whether it reaches the Hub."""
