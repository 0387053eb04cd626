"""The daemon's life: start-up, main loop and shutdown (daemon.py), the wiring of every part from one
Config (services.py), supervised background tasks (supervisor.py), periodic housekeeping
(periodic.py) and what a SIGHUP applies (reloading.py)."""
