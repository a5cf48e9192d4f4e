"""Writes the npz fixtures of the dataset tests with real NumPy.

Run from this folder: python3 gen_numpy.py (NumPy 1.24 wrote the committed
files). The Go tests check the values below, so keep both in step.
"""
import io
import zipfile

import numpy as np
from numpy.lib import format as npformat

# float32 N×C×H×W images and int64 labels, np.savez (stored members).
x = (np.arange(6 * 2 * 2 * 3, dtype=np.float32) * 0.5 - 3).reshape(6, 2, 2, 3)
np.savez("numpy_f4.npz", x=x, y=np.array([3, 1, 4, 1, 5, 9], dtype=np.int64))

# uint8 N×D examples and N×1 uint8 labels, np.savez_compressed (deflate).
x = (np.arange(5 * 4) * 13 % 256).astype(np.uint8).reshape(5, 4)
np.savez_compressed("numpy_u8.npz", x=x, y=np.array([[0], [1], [2], [1], [0]], dtype=np.uint8))

# float64 N×D examples and int32 labels.
x = np.arange(4 * 3, dtype=np.float64).reshape(4, 3) * 0.1
np.savez("numpy_f8_i4.npz", x=x, y=np.array([2, 0, 2, 1], dtype=np.int32))


def member(arr, version):
    buf = io.BytesIO()
    npformat.write_array(buf, arr, version=version)
    return buf.getvalue()


# The float32 set again, x in .npy format 2.0 and y in 3.0.
x = (np.arange(6 * 2 * 2 * 3, dtype=np.float32) * 0.5 - 3).reshape(6, 2, 2, 3)
with zipfile.ZipFile("numpy_v2v3.npz", "w") as z:
    z.writestr("x.npy", member(x, (2, 0)))
    z.writestr("y.npy", member(np.array([3, 1, 4, 1, 5, 9], dtype=np.int64), (3, 0)))

# A Fortran-order x, which the reader rejects.
x = np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3))
np.savez("numpy_fortran.npz", x=x, y=np.array([0, 1], dtype=np.int64))
