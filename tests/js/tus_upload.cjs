// Upload a file to tusd-py with tus-js-client, the client browsers and Uppy use.
// node tus_upload.cjs MODE ENDPOINT TOKEN FILE STATE_FILE
//   simple    one upload in 256 KiB chunks
//   parallel  three parallel partial uploads joined by a final concatenation
//   crash     stops the process halfway (as a closed browser tab would)
//   resume    finds the previous upload in STATE_FILE and finishes it
//   paused    stops sending at half (writes STATE_FILE.half) until STATE_FILE.go exists,
//             then goes on, retrying each request for up to about 20 s (a backend outage)
// Prints one JSON line: {"url": ..., "firstProgress": ...}
"use strict";
const fs = require("fs");
const tus = require("tus-js-client");

const [mode, endpoint, token, file, stateFile] = process.argv.slice(2);
const data = fs.readFileSync(file);
let firstProgress = null;
let lastSent = 0;

// Resolve once `path` exists (the test's signal to go on).
function untilExists(path) {
  return new Promise((resolve) => {
    const look = () => (fs.existsSync(path) ? resolve() : setTimeout(look, 20));
    look();
  });
}

const upload = new tus.Upload(data, {
  endpoint,
  headers: { Authorization: `Bearer ${token}` },
  chunkSize: mode === "simple" || mode === "parallel" ? 256 * 1024 : 64 * 1024,
  parallelUploads: mode === "parallel" ? 3 : 1,
  metadata: {
    filename: "from-tus-js-client.txt",
    filetype: "text/plain",
    operation: mode === "paused" ? "sha256" : "uppercase",
  },
  urlStorage: new tus.FileUrlStorage(stateFile),
  storeFingerprintForResuming: true,
  removeFingerprintOnSuccess: true,
  retryDelays: mode === "paused" ? [0, ...Array(20).fill(1000)] : [0, 200, 500, 1000],
  async onBeforeRequest(req) {
    if (mode === "paused" && req.getMethod() === "PATCH" && lastSent >= data.length / 2) {
      if (!fs.existsSync(`${stateFile}.half`)) fs.writeFileSync(`${stateFile}.half`, String(lastSent));
      await untilExists(`${stateFile}.go`);
    }
  },
  onProgress(sent, total) {
    if (firstProgress === null) firstProgress = sent;
    lastSent = sent;
    if (mode === "crash" && sent >= total / 2) process.exit(0);
  },
  onError(error) {
    console.error(String(error));
    process.exit(1);
  },
  onSuccess() {
    console.log(JSON.stringify({ url: upload.url, firstProgress }));
  },
});

if (mode === "resume") {
  upload.findPreviousUploads().then((previous) => {
    if (previous.length === 0) {
      console.error("no previous upload to resume");
      process.exit(1);
    }
    upload.resumeFromPreviousUpload(previous[0]);
    upload.start();
  });
} else {
  upload.start();
}
