"""Scale-out engines on Ray Data: ``sam-amg --engine ray`` and the embedding-cache precompute of
``sam-finetune --engine ray``.

Ray Data streams the image list through a pool of actors, each holding one model (``map_batches`` with a
callable class), pinned to ``--cpus-per-worker`` CPUs or one GPU. The actors call the same per-image code as
the single-process engines, so outputs are the same files, written atomically in the same places. The output
folder (or cache folder) and the checkpoint must be on a file system every node sees.

Ray is an optional extra (``pip install -e '.[ray]'``); nothing here imports it until an engine runs.
"""
