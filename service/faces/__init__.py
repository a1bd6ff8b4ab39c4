"""Faces as the service sees them: the loaded model (FaceEngine), image decoding with the service's
limits, and the warm-up inference. A thin layer over the faceverify library."""
