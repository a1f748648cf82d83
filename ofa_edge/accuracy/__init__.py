"""Subnet accuracy: measurement on images and the predictor the search uses."""
