"""Cluster: more than one folder or machine (the shard layout and the sharded index, Ray encoding and serving)."""
