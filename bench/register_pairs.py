"""Makes the image pairs of bench/register.sh (run with the bench venv's python).

fixed: ICBM152 2009a T1 at 2 mm (2x2x2 block mean of the 1 mm template; the last odd slice is
dropped). Pairs: `synthetic` (the template deformed by a known random affine and smooth field,
intensities remapped, so both tools must undo a known warp) and `siemens-xa30-t1` (a real
whole-head T1 converted with dcm2niix by bench/register.sh).
"""
import sys

import nibabel as nib
import numpy as np
from scipy.ndimage import map_coordinates

template_dir, out = sys.argv[1], sys.argv[2]
t1 = nib.load(f"{template_dir}/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
wm = nib.load(f"{template_dir}/mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz")
gm = nib.load(f"{template_dir}/mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz")


def block2(img):
    d = np.asarray(img.dataobj, dtype=np.float32)
    s = [n - n % 2 for n in d.shape]
    d = d[: s[0], : s[1], : s[2]]
    d = d.reshape(s[0] // 2, 2, s[1] // 2, 2, s[2] // 2, 2).mean(axis=(1, 3, 5))
    a = img.affine.copy()
    a[:3, :3] *= 2
    a[:3, 3] += img.affine[:3, :3] @ np.array([0.5, 0.5, 0.5])
    return d, a


fixed, aff = block2(t1)
nib.save(nib.Nifti1Image(fixed, aff), f"{out}/fixed.nii.gz")
nib.save(nib.Nifti1Image((fixed > 0.2 * fixed.max()).astype(np.uint8), aff), f"{out}/fixed_mask.nii.gz")
for name, img in (("wm", wm), ("gm", gm)):
    d, _ = block2(img)
    nib.save(nib.Nifti1Image(d / 255.0, aff), f"{out}/fixed_{name}.nii.gz")

rng = np.random.default_rng(11)
r = lambda a: rng.uniform(-a, a)
ax, ay, az = (np.radians(r(10)) for _ in range(3))
rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
a = rz @ ry @ rx @ np.diag([1 + r(0.1), 1 + r(0.1), 1 + r(0.1)])
ijk = np.indices(fixed.shape).reshape(3, -1).astype(np.float64)
world = aff[:3, :3] @ ijk + aff[:3, 3:4]
mask = fixed.reshape(-1) > 0.2 * fixed.max()
centre = world[:, mask].mean(axis=1, keepdims=True)
z = a @ (world - centre) + centre + np.array([[r(10)], [r(10)], [r(10)]])
for _ in range(6):
    c = centre + np.array([[r(40)], [r(50)], [r(35)]])
    amp = np.array([[r(6)], [r(6)], [r(6)]])
    z = z + amp * np.exp(-((z - c) ** 2).sum(axis=0) / (2 * 20.0**2))
src = np.linalg.inv(aff) @ np.vstack([z, np.ones((1, z.shape[1]))])
moving = map_coordinates(fixed, src[:3], order=1, mode="constant", cval=0.0).reshape(fixed.shape)
moving = 900.0 * np.clip(moving / 255.0, 0, None) ** 0.7 + 40.0
nib.save(nib.Nifti1Image(moving.astype(np.float32), aff), f"{out}/synthetic.nii.gz")
