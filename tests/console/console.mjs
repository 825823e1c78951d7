// The console in a real browser, for tests/console.rs: Debian's chromium, headless, driven
// through the DevTools protocol by puppeteer-core.
//
//   node console.mjs ADMIN_URL TOKEN STREAM SCREENSHOT
//
// Signs in with the admin token as the password of Basic credentials (any user name, as an
// operator types it into the browser's prompt), opens the console, waits for STREAM
// ("app/stream") to be listed, then opens HTTP-FLV viewers from here (at the URL the page
// shows) and waits for the page's viewer count to follow them in and out. Then it plays the
// stream in the page's player and waits for the video to advance. It takes a screenshot to
// SCREENSHOT and prints one JSON line with what it saw; the Rust test asserts on it. Exits
// 1 (still printing the JSON, with "error") when a step fails.

import { launchChromium } from "./browser.mjs";

const [adminUrl, token, stream, screenshot] = process.argv.slice(2);
if (!screenshot) {
  process.stderr.write("usage: node console.mjs ADMIN_URL TOKEN STREAM SCREENSHOT\n");
  process.exit(2);
}

/** HTTP-FLV viewers opened from here. */
const VIEWERS = 3;
/** Seconds of video the player must play. */
const PLAYED_S = 2;
/** Bound for each wait, ms (the API is refreshed once a second, the page reads it as often). */
const WAIT_MS = 15000;

const results = {
  console_errors: [],
  console_warnings: [],
  page_errors: [],
  failed_requests: [],
};
const row = `#streams tr[data-stream=${JSON.stringify(stream)}]`;

function say(message) {
  process.stderr.write(`console.mjs: ${message}\n`);
}

/** The total viewer count the page shows for the stream. */
async function shownViewers(page) {
  return Number(await page.$eval(`${row} td.viewers-total`, (cell) => cell.textContent));
}

/** Waits until the page shows `count` viewers of the stream. */
async function waitViewers(page, count) {
  await page.waitForFunction(
    (selector, n) => Number(document.querySelector(selector)?.textContent) === n,
    { timeout: WAIT_MS, polling: 100 },
    `${row} td.viewers-total`,
    count,
  );
}

/** An HTTP-FLV viewer from Node: reads the response until aborted. */
function flvViewer(url, signal, viewer) {
  return fetch(url, { signal }).then(async (response) => {
    viewer.status = response.status;
    const reader = response.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      viewer.bytes += value.length;
    }
  }).catch((err) => {
    if (err.name !== "AbortError") viewer.error = String(err);
  });
}

const browser = await launchChromium();
let page;
let exitCode = 0;
try {
  results.browser = await browser.version();
  page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 1000 });
  page.on("console", (message) => {
    const entry = message.text();
    if (message.type() === "error") results.console_errors.push(entry);
    if (message.type() === "warn" || message.type() === "warning") results.console_warnings.push(entry);
  });
  page.on("pageerror", (err) => results.page_errors.push(String(err)));
  page.on("requestfailed", (request) => {
    results.failed_requests.push(`${request.url()}: ${request.failure()?.errorText}`);
  });

  // What the browser's prompt would send.
  await page.authenticate({ username: "operator", password: token });
  const response = await page.goto(`${adminUrl}/`, { waitUntil: "load", timeout: WAIT_MS });
  results.page_status = response.status();
  results.content_security_policy = response.headers()["content-security-policy"];

  await page.waitForSelector(row, { timeout: WAIT_MS });
  results.listed = true;
  results.codecs = await page.$eval(row, (tr) => [
    tr.querySelector("td.video").textContent,
    tr.querySelector("td.audio").textContent,
    tr.querySelector("td.size").textContent,
  ]);
  results.flv_url = await page.$eval(`${row} a.flv-url`, (a) => a.href);
  results.viewers_before = await shownViewers(page);
  say(`listed ${stream} with ${results.viewers_before} viewers; FLV at ${results.flv_url}`);

  // Viewers join: the count follows.
  const leave = new AbortController();
  const viewers = Array.from({ length: VIEWERS }, () => ({ status: null, bytes: 0 }));
  const reading = viewers.map((viewer) => flvViewer(results.flv_url, leave.signal, viewer));
  await waitViewers(page, results.viewers_before + VIEWERS);
  results.viewers_joined = await shownViewers(page);
  say(`${VIEWERS} viewers joined: the page shows ${results.viewers_joined}`);

  // And leave: it follows back.
  leave.abort();
  await Promise.all(reading);
  results.node_viewers = viewers;
  await waitViewers(page, results.viewers_before);
  results.viewers_left = await shownViewers(page);

  // Play it in the page.
  await page.click(`${row} button.play`);
  await page.waitForFunction(
    (seconds) => {
      const video = document.querySelector("video");
      return video.error !== null || video.currentTime > seconds;
    },
    { timeout: WAIT_MS, polling: 100 },
    PLAYED_S,
  );
  const video = () =>
    page.$eval("video", (v) => ({
      current_time: v.currentTime,
      error: v.error && `${v.error.code}: ${v.error.message}`,
      width: v.videoWidth,
      height: v.videoHeight,
      paused: v.paused,
      ready_state: v.readyState,
    }));
  results.video = await video();
  await new Promise((resolve) => setTimeout(resolve, 1000));
  results.video_later = await video();
  // The player is a viewer too.
  await waitViewers(page, results.viewers_before + 1);
  results.viewers_with_player = await shownViewers(page);
  results.player_status = await page.$eval("#player-status", (p) => p.textContent);
  say(`played ${results.video_later.current_time.toFixed(1)} s: ${results.player_status}`);
} catch (err) {
  results.error = String(err && err.stack ? err.stack : err);
  exitCode = 1;
} finally {
  if (page) {
    try {
      await page.screenshot({ path: screenshot, fullPage: true });
      results.screenshot = screenshot;
    } catch (err) {
      results.screenshot_error = String(err);
    }
  }
  await browser.close();
}
process.stdout.write(JSON.stringify(results) + "\n");
process.exit(exitCode);
