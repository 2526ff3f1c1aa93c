"""Prefect flows and the `mathsynth` CLI. Wiring only: no business logic lives here."""
