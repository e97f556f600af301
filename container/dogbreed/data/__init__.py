"""Photos in: decoding, the class-folder scan, transforms, loaders and the caches (decoded photos,
the frozen backbone's features)."""
