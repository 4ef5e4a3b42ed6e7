// Photos in: drop, file picker, camera, paste; scaled down in the browser before they are sent.

const LONG_EDGE = 1024;
const SEND_AS_IS_BYTES = 300 * 1024; // a photo this small is sent as it is
const HEIF = /^image\/hei[cf]/i;

export function isHeif(file) {
  return HEIF.test(file.type) || /\.(heic|heif)$/i.test(file.name);
}

/** What to upload: a JPEG whose long edge is at most 1024 px, or the file itself (HEIC, small, or undecodable). */
export async function prepare(file) {
  if (isHeif(file) || file.size <= SEND_AS_IS_BYTES) return { blob: file, name: file.name };
  // The browser cannot read it (the server then says what is wrong) or cannot re-encode: sent as it is.
  const jpeg = await scaledJpeg(file, LONG_EDGE, 0.88);
  if (!jpeg || jpeg.size >= file.size) return { blob: file, name: file.name };
  return { blob: jpeg, name: file.name.replace(/\.[^.]*$/, "") + ".jpg" };
}

/** A small JPEG for the history (kept in IndexedDB); null if the browser cannot decode the file. */
export const thumbnail = (file) => scaledJpeg(file, 128, 0.8);

/** The photo as a JPEG whose long edge is at most `edge` px, upright; null if the browser cannot make it. */
async function scaledJpeg(file, edge, quality) {
  try {
    const bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
    const scale = Math.min(1, edge / Math.max(bitmap.width, bitmap.height));
    const canvas = new OffscreenCanvas(Math.max(1, Math.round(bitmap.width * scale)),
      Math.max(1, Math.round(bitmap.height * scale)));
    canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    bitmap.close();
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
