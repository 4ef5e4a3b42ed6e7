// Photos in: drop, file picker, camera, paste; scaled down in the browser before they are sent.

const LONG_EDGE = 1024;
const SEND_AS_IS_BYTES = 300 * 1024; // a photo this small is sent as it is
const THUMBNAIL_EDGE = 128;
const HEIF = /^image\/hei[cf]/i;

export function isHeif(file) {
  return HEIF.test(file.type) || /\.(heic|heif)$/i.test(file.name);
}

/**
 * What to upload and keep, from one decode of the photo (a 12 MP one is 48 MB decoded): `blob`, a JPEG whose long
 * edge is at most 1024 px, or the file itself (HEIC, small, or not one the browser can scale), with its `name`;
 * and `thumbnail`, a 128 px JPEG for the history, null if the browser cannot decode the file.
 */
export async function prepare(file) {
  const canvas = await decoded(file, LONG_EDGE);
  const thumbnail = canvas && await jpeg(scaled(canvas, THUMBNAIL_EDGE), 0.8);
  const asIs = { blob: file, name: file.name, thumbnail };
  if (!canvas || isHeif(file) || file.size <= SEND_AS_IS_BYTES) return asIs;
  // The browser cannot re-encode, or its JPEG is no smaller: sent as it is (the server then says what is wrong)
  const upload = await jpeg(canvas, 0.88);
  if (!upload || upload.size >= file.size) return asIs;
  return { blob: upload, name: file.name.replace(/\.[^.]*$/, "") + ".jpg", thumbnail };
}

/** A canvas whose long edge is at most `edge` px holding `source` (an ImageBitmap or a canvas). */
function scaled(source, edge) {
  const scale = Math.min(1, edge / Math.max(source.width, source.height));
  const canvas = new OffscreenCanvas(Math.max(1, Math.round(source.width * scale)),
    Math.max(1, Math.round(source.height * scale)));
  canvas.getContext("2d").drawImage(source, 0, 0, canvas.width, canvas.height);
  return canvas;
}

/** The photo, upright, on a canvas whose long edge is at most `edge` px; null if the browser cannot decode it. */
async function decoded(file, edge) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
    return scaled(bitmap, edge);
  } catch {
    return null;
  } finally {
    bitmap?.close(); // the full-size pixels go at once, not when the garbage collector gets to them
  }
}

async function jpeg(canvas, quality) {
  try {
    return await canvas.convertToBlob({ type: "image/jpeg", quality });
  } catch {
    return null;
  }
}

/** Calls `onFiles(files)` for photos dropped on `zone`, chosen in `inputs`, or pasted anywhere on the page. */
export function listen(zone, inputs, onFiles) {
  const images = (list) => [...list].filter((file) => file.type.startsWith("image/") || isHeif(file)
    || /\.(jpe?g|png|webp|gif|bmp|tiff?|avif)$/i.test(file.name));
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    const files = images(event.dataTransfer.files);
    if (files.length) onFiles(files);
  });
  for (const input of inputs) {
    input.addEventListener("change", () => {
      if (input.files.length) onFiles([...input.files]);
      input.value = "";
    });
  }
  // A photo dropped beside the zone would otherwise open in the tab, and every card would be gone.
  for (const type of ["dragover", "drop"]) document.addEventListener(type, (event) => event.preventDefault());
  document.addEventListener("paste", (event) => {
    const files = images(event.clipboardData?.files || []);
    if (files.length) {
      event.preventDefault();
      onFiles(files);
    }
  });
}
