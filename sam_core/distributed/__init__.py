"""Scale-out engines on Ray Data: ``sam-amg --engine ray`` and the embedding-cache precompute of
``sam-finetune --engine ray``. Ray is an optional extra (``pip install -e '.[ray]'``); nothing here imports it
until an engine runs.

Design notes: docs/distributed.md."""
