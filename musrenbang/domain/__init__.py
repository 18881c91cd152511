"""The pure domain: stages, templates, regions, decisions and rules. No I/O, no frameworks."""
