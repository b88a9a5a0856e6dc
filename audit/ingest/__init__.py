"""Import: records, the importer, uploads and their screens."""
