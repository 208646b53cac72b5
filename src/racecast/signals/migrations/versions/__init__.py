"""Migration scripts, one per revision (``NNNN_description.py``), written by hand."""
