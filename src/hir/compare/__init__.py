"""`hir compare`: methods side by side on one task, starting policy, sampling budget and seeds.

    methods.py      what can be compared: the methods by name, their configs, the start's rows
    run.py          the runs, one folder each (METHOD/seed-N), resumable and shared by processes
    table.py        the table (mean ± std over seeds), the plots, what the comparison writes
    diagnostics.py  the training logs' first and last iteration per method
    transfer.py     the screen of each trained model (`--screen_trained`)
    status.py       where a comparison stands, read from its folder (`--status`)

The command's module (`hir.commands.compare`) is the one caller above this package.
"""
