"""Challenge-response liveness over a short burst of frames, judged from geometry (no learned model).

Each check is a small pure module working on numbers the face pipeline already produces (5 landmarks
per frame in the shared contract order, face embeddings, aligned chips):

* :mod:`.steps` -- the requested head movements happen, in order, from a neutral start;
* :mod:`.depth` -- the landmarks move like a 3D head, not like a flat photo or screen (homography
  residual of the nose against the eyes/mouth plane);
* :mod:`.continuity` -- one continuous face: every frame is the user, no jumps between frames;
* :mod:`.freshness` -- the frames are not copies of the enrolment photos or of an earlier burst;
* :mod:`.synthetic` -- a rotating 3D face model and a tilted photo plane seen through a pinhole camera,
  for the tests and the benchmark.

No check here detects a 3D mask or a deepfake stream injected into the camera (see README, Liveness).
"""

from faceverify.liveness.steps import STEPS, Step

__all__ = ["STEPS", "Step"]
