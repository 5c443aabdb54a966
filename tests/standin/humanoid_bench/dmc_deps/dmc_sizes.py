"""Stand-in for HB's MuJoCo 3.1.6 field table: `tex_rgb` is a 3.1.6 field that later MuJoCo
versions renamed, so reading every listed field fails unless common/envs.py's shim drops it."""

array_sizes = {
    "mjdata": {"qpos": ("nq",), "qvel": ("nv",)},
    "mjmodel": {"qpos0": ("nq",), "tex_rgb": ("ntexdata",), "body_mass": ("nbody",)},
}
