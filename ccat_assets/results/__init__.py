"""What a run leaves: the container contract's output directory, the DataProducts collected
from it with their lineage, and their life on disk.

Owns the contract (``contract``: run layout, sidecars), collection (``collect``), what a run
consumed (``run_consumed``), lineage queries (``provenance``) and their PROV export
(``prov_export``), product integrity (``fits_integrity``) and previews (``thumbnails``), and
the storage lifecycle (``storage_lifecycle``). Automation reads these records to decide what
is up to date, so this layer sits below it; it never imports automation or execution.
"""
