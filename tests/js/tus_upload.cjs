// Upload a file to tusd-py with tus-js-client, the client browsers and Uppy use.
// node tus_upload.cjs MODE ENDPOINT TOKEN FILE STATE_FILE
//   simple    one upload in 256 KiB chunks
//   parallel  three parallel partial uploads joined by a final concatenation
//   crash     stops the process halfway (as a closed browser tab would)
//   resume    finds the previous upload in STATE_FILE and finishes it
// Prints one JSON line: {"url": ..., "firstProgress": ...}
"use strict";
const fs = require("fs");
const tus = require("tus-js-client");

const [mode, endpoint, token, file, stateFile] = process.argv.slice(2);
const data = fs.readFileSync(file);
let firstProgress = null;

const upload = new tus.Upload(data, {
  endpoint,
  headers: { Authorization: `Bearer ${token}` },
  chunkSize: mode === "simple" || mode === "parallel" ? 256 * 1024 : 64 * 1024,
  parallelUploads: mode === "parallel" ? 3 : 1,
  metadata: { filename: "from-tus-js-client.txt", filetype: "text/plain", operation: "uppercase" },
  urlStorage: new tus.FileUrlStorage(stateFile),
  storeFingerprintForResuming: true,
  removeFingerprintOnSuccess: true,
  retryDelays: [0, 200, 500, 1000],
  onProgress(sent, total) {
    if (firstProgress === null) firstProgress = sent;
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
