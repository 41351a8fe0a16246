"""Run folders and what surrounds a run: launching, locks, loggers, sweeps, curves, known failures, pre-emption."""
