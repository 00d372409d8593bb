"""Shared by every test folder: this file's presence puts tests/ on the import path (helpers such as
image_files.py)."""
