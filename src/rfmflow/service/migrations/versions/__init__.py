"""Migration revisions, oldest first; write new ones by hand and keep them in step with
:mod:`rfmflow.service.db.tables` (a test compares the migrated schema with the tables)."""
