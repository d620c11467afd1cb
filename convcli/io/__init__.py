"""Decoding and encoding of files: images (Pillow), audio (soundfile), arrays. No math here."""
