"""The core: store and embed actors, SQL, the call protocol and executors. Private modules.

Imports trio, apsw, sqlite-vec, attrs and the embedders; never ``triomem.engine`` or
``triomem.transports`` (pinned by tests/unit/test_layering.py).
"""
