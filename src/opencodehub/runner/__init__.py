"""The runner agent and its executors. Imports nothing of the server but the protocol models."""
