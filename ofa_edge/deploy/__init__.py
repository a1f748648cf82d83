"""Deployment: models pushed to devices, verified there, recorded in manifests."""
