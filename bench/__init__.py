"""recordgpu's benchmark harness: speed and memory targets measured by a command, never by tests.

``python -m bench read`` (RecordIO read throughput vs a plain file read), ``python -m bench iter``
(ImageRecordIter throughput vs DALI's CPU pipeline, MXNet and decode-only), ``python -m bench all``,
``python -m bench setup`` (create the peers' virtualenvs). See ``bench/README.md``.
"""
