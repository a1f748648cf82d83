"""Test doubles and fixtures shipped for users and for our own tests (real sshd, fake adbd)."""
