"""Images at the pixel size a request asks for, drawn once per size and stamped per seed.

`look.py` decides what an image looks like (a grainy stripe pattern per size, a banner with
the seed's text, colours from the seed); `png.py`, `jpeg.py` and `webp.py` encode it, and
`padding.py` grows a finished file to a byte size while it still decodes. Pillow is imported
inside functions only, so `import costguard` never loads it.
"""
