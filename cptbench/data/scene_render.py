"""Rendering a scene (:mod:`cptbench.data.scenes`) as flat-colour RGB pixels, and the pixel mask
of each object: a pixel belongs to an object when its centre lies inside the shape."""

from __future__ import annotations

import math

import numpy as np

from cptbench.data.scenes import Scene, SceneObject, check_image_size, scale_scene


def object_mask(obj: SceneObject, image_size: int) -> np.ndarray:
    """Boolean ``(image_size, image_size)`` mask of the pixels whose centres lie inside ``obj``."""
    mask = np.zeros((image_size, image_size), dtype=bool)
    x1, y1, x2, y2 = obj.xyxy
    # Only pixels whose centres can lie in the box are tested.
    c0, c1 = max(0, int(math.floor(x1))), min(image_size, int(math.ceil(x2)))
    r0, r1 = max(0, int(math.floor(y1))), min(image_size, int(math.ceil(y2)))
    if c0 >= c1 or r0 >= r1:
        return mask
    xx = (np.arange(c0, c1, dtype=np.float64) + 0.5)[None, :]
    yy = (np.arange(r0, r1, dtype=np.float64) + 0.5)[:, None]
    if obj.shape == "circle":
        cx, cy = obj.center
        inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= obj.radius**2
    else:
        pts = np.asarray(obj.polygon, dtype=np.float64).reshape(-1, 2)
        inside = np.ones((r1 - r0, c1 - c0), dtype=bool)
        # Convex polygon, clockwise on screen (y down): a point is inside when it lies on the right
        # of (or on) every edge, i.e. cross(edge, point - start) >= 0.
        for (px0, py0), (px1, py1) in zip(pts, np.roll(pts, -1, axis=0)):
            inside &= (px1 - px0) * (yy - py0) - (py1 - py0) * (xx - px0) >= 0
    mask[r0:r1, c0:c1] = inside
    return mask


def render_scene(scene: Scene, image_size: int | None = None) -> np.ndarray:
    """The scene as a ``uint8`` RGB array of shape ``(H, W, 3)`` (flat colours, no anti-aliasing).

    ``image_size`` different from ``scene.image_size`` renders the scene scaled to that size.
    """
    if image_size is not None and image_size != scene.image_size:
        check_image_size(image_size)
        scene = scale_scene(scene, image_size)
    n = scene.image_size
    img = np.empty((n, n, 3), dtype=np.uint8)
    img[...] = np.asarray(scene.background, dtype=np.uint8)
    for obj in scene.objects:
        img[object_mask(obj, n)] = np.asarray(obj.rgb, dtype=np.uint8)
    return img
