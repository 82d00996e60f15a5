"""Storage: a cell's result as typed data, its directory on disk, the parent cache, and the one results reader."""
