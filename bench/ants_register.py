"""Runs antsRegistration (from ANTsPy) with the BRAID chain's antsRegistrationSyN.sh -t s
parameters on one pair and prints the wall-clock and CPU (all threads) seconds it took.
Usage: fixed moving outdir."""
import sys
import time

import ants
from ants.internal import get_lib_fn

fixed, moving, out = sys.argv[1:4]
linear = ["1000x500x250x100", "8x4x2x1", "3x2x1x0vox"]
args = [
    "--dimensionality", "3", "--float", "1",
    "--output", f"[{out}/ants_,{out}/warped.nii.gz]",
    "--interpolation", "Linear", "--use-histogram-matching", "0",
    "--winsorize-image-intensities", "[0.005,0.995]",
    "--initial-moving-transform", f"[{fixed},{moving},1]",
    "--transform", "Rigid[0.1]", "--metric", f"MI[{fixed},{moving},1,32,Regular,0.25]",
    "--convergence", f"[{linear[0]},1e-6,10]", "--shrink-factors", linear[1],
    "--smoothing-sigmas", linear[2],
    "--transform", "Affine[0.1]", "--metric", f"MI[{fixed},{moving},1,32,Regular,0.25]",
    "--convergence", f"[{linear[0]},1e-6,10]", "--shrink-factors", linear[1],
    "--smoothing-sigmas", linear[2],
    "--transform", "SyN[0.1,3,0]", "--metric", f"CC[{fixed},{moving},1,4]",
    "--convergence", "[100x70x50x20,1e-6,10]", "--shrink-factors", "8x4x2x1",
    "--smoothing-sigmas", "3x2x1x0vox",
]
started = time.time()
cpu = time.process_time()
rc = get_lib_fn("antsRegistration")(args)
elapsed = time.time() - started
cpu = time.process_time() - cpu
if rc != 0:
    sys.exit(f"antsRegistration failed ({rc})")
print(f"{elapsed:.3f} {cpu:.3f}")
