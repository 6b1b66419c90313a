"""Importers for the file formats other CRMs export."""
