"""Distillation: the recovery engine every lossy pass trains with, its losses, and the passes built on it."""
