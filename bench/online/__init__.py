"""Online measurement: bench's engines behind an OpenAI-compatible HTTP server (server.py,
batcher.py), and a load generator for any such endpoint (load.py, load_folder.py)."""
