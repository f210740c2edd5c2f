"""Tar shards: write.py (source records -> webdataset tar shards + manifest + quarantine),
read.py (resumable streaming loader and random-access reader), manifest.py (the manifest)."""
