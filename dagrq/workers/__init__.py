"""Process control: the leased RQ worker classes, one worker's life, the supervised pool of
``dagrq worker``, and groups of processes started together."""
