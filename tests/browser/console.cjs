// node console.cjs MODE BASE_URL FILE: drive the web console at / like a person would.
//   upload: register, add FILE to the Dashboard, upload, wait for "completed" in the task list
//           (no reload), download the result (SHA-256 of the Blob), then a second user in a
//           fresh browser context lists no task of the first.
//   resume: register, upload FILE with the page's network throttled, reload mid-upload,
//           add the same file again and report how the upload resumed.
"use strict";
const { run, watch } = require("./browser.cjs");

const [mode, base, file] = process.argv.slice(2);
const TIMEOUT = 120000;
const name = () => `web${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;

// Hash every Blob the page turns into a download link, and keep downloads off the disk.
async function instrument(page, browser) {
  await page.evaluateOnNewDocument(() => {
    window.__downloads = [];
    const original = URL.createObjectURL.bind(URL);
    URL.createObjectURL = (blob) => {
      window.__downloads.push(
        blob.arrayBuffer().then(async (bytes) => {
          const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
          return { size: bytes.byteLength, sha256: [...digest].map((b) => b.toString(16).padStart(2, "0")).join("") };
        }),
      );
      return original(blob);
    };
  });
  const cdp = await browser.target().createCDPSession();
  await cdp.send("Browser.setDownloadBehavior", { behavior: "deny" });
}

async function register(page, username) {
  await page.goto(`${base}/`, { waitUntil: "load" });
  await page.waitForSelector("#auth:not([hidden])", { timeout: TIMEOUT });
  await page.type("#username", username);
  await page.type("#password", "correct horse battery");
  await page.click("#register");
  await page.waitForFunction(() => document.querySelector("#stream-state")?.textContent === "live", { timeout: TIMEOUT });
}

async function addAndUpload(page, path) {
  const input = await page.waitForSelector(".uppy-Dashboard-input", { timeout: TIMEOUT });
  await input.uploadFile(path);
  const start = await page.waitForSelector(".uppy-StatusBar-actionBtn--upload", { timeout: TIMEOUT });
  await start.click();
}

async function rows(page) {
  return page.$$eval("#tasks tbody tr", (trs) =>
    trs.map((tr) => ({
      id: tr.dataset.id,
      status: tr.dataset.status,
      filename: tr.querySelector(".filename").textContent,
      attempts: tr.querySelector(".attempts").textContent,
    })),
  );
}

async function upload(browser) {
  const page = await browser.newPage();
  const errors = [];
  watch(page, errors);
  await instrument(page, browser);
  const username = name();
  await register(page, username);
  const operation = await page.$eval("#operation", (select) => select.value);
  await addAndUpload(page, file);
  await page.waitForSelector('#tasks tr[data-status="completed"]', { timeout: TIMEOUT });
  const completedRows = await rows(page);
  await page.click('#tasks tr[data-status="completed"] button.download');
  await page.waitForFunction(() => window.__downloads.length > 0, { timeout: TIMEOUT });
  const download = await page.evaluate(() => window.__downloads[0]);
  const token = await page.evaluate(() => JSON.parse(sessionStorage.getItem("tusd-py.session")).access_token);

  // A second user, in a browser context of its own, sees none of the first user's tasks.
  const other = await browser.createBrowserContext();
  const otherPage = await other.newPage();
  watch(otherPage, errors);
  await register(otherPage, name());
  await otherPage.waitForFunction(() => !document.querySelector("#no-tasks").hidden, { timeout: TIMEOUT });
  const otherRows = await rows(otherPage);
  const otherHtml = await otherPage.content();

  // Logout ends the session server-side and leaves no token in the page.
  await page.click("#logout");
  await page.waitForSelector("#auth:not([hidden])", { timeout: TIMEOUT });
  const storedAfterLogout = await page.evaluate(() => sessionStorage.getItem("tusd-py.session"));
  return { username, operation, rows: completedRows, download, token, otherRows, otherHtml, storedAfterLogout, errors };
}

async function resume(browser) {
  const page = await browser.newPage();
  const errors = [];
  watch(page, errors);
  const requests = [];
  page.on("response", (response) => {
    const request = response.request();
    if (!request.url().includes("/files/")) return;
    requests.push({
      method: request.method(),
      url: response.headers().location ? new URL(response.headers().location, base).href : request.url(),
      status: response.status(),
      requestOffset: request.headers()["upload-offset"] ?? null,
      responseOffset: response.headers()["upload-offset"] ?? null,
    });
  });
  const throttle = () => page.emulateNetworkConditions({ offline: false, download: 50e6, upload: 3e6, latency: 5 });
  await register(page, name());
  await throttle();
  await addAndUpload(page, file);
  // Reload once a third of the file is on its way (Uppy's progress bar), mid-PATCH.
  await page.waitForFunction(
    () => Number(document.querySelector(".uppy-StatusBar-progress")?.getAttribute("aria-valuenow") ?? 0) >= 33,
    { timeout: TIMEOUT, polling: 100 },
  );
  const beforeReload = requests.length;
  await page.reload({ waitUntil: "load" });
  await page.waitForFunction(() => document.querySelector("#stream-state")?.textContent === "live", { timeout: TIMEOUT });
  await page.emulateNetworkConditions(null);
  await addAndUpload(page, file);
  await page.waitForSelector('#tasks tr[data-status="completed"]', { timeout: TIMEOUT });
  return { before: requests.slice(0, beforeReload), after: requests.slice(beforeReload), rows: await rows(page), errors };
}

// The access token is refreshed before it expires, with no user action.
async function refresh(browser) {
  const page = await browser.newPage();
  const errors = [];
  watch(page, errors);
  await register(page, name());
  const stored = () => page.evaluate(() => JSON.parse(sessionStorage.getItem("tusd-py.session")));
  const first = await stored();
  await page.waitForFunction(
    (token) => JSON.parse(sessionStorage.getItem("tusd-py.session")).access_token !== token,
    { timeout: TIMEOUT, polling: 250 },
    first.access_token,
  );
  const second = await stored();
  const refreshedBeforeExpiry = Date.now() < first.expires_at;
  const me = await page.evaluate(async (token) => (await fetch("/auth/me", { headers: { Authorization: `Bearer ${token}` } })).status, second.access_token);
  return { first, second, refreshedBeforeExpiry, me, errors };
}

// The stream drops (the test restarts the API when this prints "drop" and answers on
// stdin): a new ticket and a reconnect that resumes after the last event seen.
function nextLine() {
  return new Promise((resolve) => process.stdin.once("data", (chunk) => resolve(String(chunk).trim())));
}

async function reconnect(browser) {
  const page = await browser.newPage();
  const errors = [];
  watch(page, errors);
  const streams = [];
  page.on("request", (request) => {
    if (new URL(request.url()).pathname === "/events") streams.push(request.url());
  });
  await register(page, name());
  await addAndUpload(page, file);
  await page.waitForSelector('#tasks tr[data-status="completed"]', { timeout: TIMEOUT });
  process.stdout.write("drop\n");
  await nextLine(); // the API was killed and started again
  const before = streams.length;
  await page.waitForFunction(() => document.querySelector("#stream-state").textContent === "live", { timeout: TIMEOUT });
  if (streams.length === before) throw new Error("the console did not open a new stream after the API restart");
  const opened = streams.length;
  // A second upload after the reconnect reaches the list through the new stream.
  await page.click(".uppy-DashboardContent-addMore");
  const input = await page.waitForSelector(".uppy-Dashboard-input", { timeout: TIMEOUT });
  await input.uploadFile(process.argv[5]);
  await (await page.waitForSelector(".uppy-StatusBar-actionBtn--upload", { timeout: TIMEOUT })).click();
  await page.waitForFunction(() => document.querySelectorAll('#tasks tr[data-status="completed"]').length === 2, { timeout: TIMEOUT });
  return { streams: streams.slice(0, opened), rows: await rows(page), errors };
}

// Cancel a task that hangs; watch a task that crashes once retry (attempts, error) and complete.
async function cancelAndRetry(browser) {
  const page = await browser.newPage();
  const errors = [];
  watch(page, errors);
  await register(page, name());
  await page.evaluate(() => {
    window.__seen = [];
    new MutationObserver(() => {
      for (const tr of document.querySelectorAll("#tasks tbody tr")) {
        window.__seen.push([tr.querySelector(".filename").textContent, tr.dataset.status, tr.querySelector(".attempts").textContent, tr.querySelector(".error").textContent]);
      }
    }).observe(document.querySelector("#tasks tbody"), { childList: true, subtree: true });
  });
  await page.select("#operation", "fault-hang");
  await addAndUpload(page, file);
  await page.waitForSelector('#tasks tr[data-status="processing"] button.cancel', { timeout: TIMEOUT });
  await page.click('#tasks tr[data-status="processing"] button.cancel');
  await page.waitForSelector('#tasks tr[data-status="cancelled"]', { timeout: TIMEOUT });
  await page.select("#operation", "fault-crash-once");
  await page.click(".uppy-DashboardContent-addMore");
  await (await page.waitForSelector(".uppy-Dashboard-input", { timeout: TIMEOUT })).uploadFile(process.argv[5]);
  await (await page.waitForSelector(".uppy-StatusBar-actionBtn--upload", { timeout: TIMEOUT })).click();
  await page.waitForSelector('#tasks tr[data-status="completed"]', { timeout: TIMEOUT });
  return { rows: await rows(page), seen: await page.evaluate(() => window.__seen), errors };
}

run({ upload, resume, refresh, reconnect, "cancel-and-retry": cancelAndRetry }[mode]);
