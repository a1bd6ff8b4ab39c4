// The camera: preview in a <video>, frames grabbed as JPEG blobs through a canvas.
// Frames are sent as the camera sees them (not mirrored); only the preview is shown as a mirror,
// which is what people expect of a screen facing them.

const MAX_WIDTH = 640; // the server's detector works at this size anyway; smaller uploads are faster

export async function startCamera(video) {
  if (!navigator.mediaDevices?.getUserMedia) {
    throw new Error("this browser gives no camera access (a secure origin is needed: https or localhost)");
  }
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: false,
    video: { facingMode: "user", width: { ideal: 640 }, height: { ideal: 480 } },
  });
  video.srcObject = stream;
  await video.play();
  return stream;
}

export function stopCamera(video) {
  const stream = video.srcObject;
  if (stream) {
    for (const track of stream.getTracks()) {
      track.stop();
    }
  }
  video.srcObject = null;
}

/** The current frame as a JPEG Blob (at most 640 px wide), and its size in pixels. */
export function grabFrame(video, canvas, quality = 0.9) {
  const scale = Math.min(1, MAX_WIDTH / (video.videoWidth || MAX_WIDTH));
  canvas.width = Math.round((video.videoWidth || MAX_WIDTH) * scale);
  canvas.height = Math.round((video.videoHeight || 480) * scale);
  canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
  const size = { width: canvas.width, height: canvas.height };
  return new Promise((resolve, reject) => {
    canvas.toBlob(
      (blob) => (blob ? resolve({ blob, ...size }) : reject(new Error("the frame could not be encoded"))),
      "image/jpeg",
      quality,
    );
  });
}
