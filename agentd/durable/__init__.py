"""Crash safety, one room: what reaches the disk, in which order, and what recovery reads back.

group.py        group commit: many callers' new files and fsyncs done together, off the event loop
sync_worker.py  a group commit's file work, and the main of the helper process that does it
journal.py      a run's journal: paid answers and tool intents/results, replayed on resume
"""
