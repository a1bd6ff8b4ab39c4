"""Challenge-response liveness over a short burst of frames, judged from geometry (no learned
anti-spoofing model): the face mesh (faceverify.mesh) on every frame, the towers on a few.

:mod:`.burst` runs the checks in order on a burst and stops at the first failure; each check is a
small pure module working on numbers per frame (5 landmarks in the shared contract order, the dense
mesh, eye and mouth ratios, face embeddings, aligned chips):

* :mod:`.steps` -- the requested steps happen, in order, from a neutral start: head turns and the
  actions a still image cannot perform (blink, open_mouth); :func:`.steps.draw_challenge` draws them;
* :mod:`.rigidity` -- the dense mesh moves like a 3-D head, not like a picture (plane, bent sheet, warp);
* :mod:`.depth` -- the landmarks move like a 3D head, not like a flat photo or screen (homography
  residual of the nose against the eyes/mouth plane);
* :mod:`.continuity` -- one continuous face: every frame is the user, no jumps between frames;
* :mod:`.freshness` -- the frames are not copies of the enrolment photos or of an earlier burst;
* :mod:`.synthetic`, :mod:`.render`, :mod:`.attacks` -- simulated heads and rendered attacks (tilted,
  bent, 2-D warped photos, a photo on a head relief) for the tests and the benchmarks.

No check here detects a 3D mask or a deepfake stream injected into the camera (docs/liveness.md).
"""

from faceverify.liveness.steps import STEPS, Step

__all__ = ["STEPS", "Step"]
