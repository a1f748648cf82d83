"""Measuring on a device: model files written for timing, the reference model, and timing
against it (interleaved or bracketed) so the device's drift cancels out.

Between ``devices`` (sessions that run models) and ``lut`` (tables of what was measured).
"""
